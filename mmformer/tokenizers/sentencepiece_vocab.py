"""Strings ↔ ids with a sentencepiece BPE model: training (cached), encoding, padding, decoding.

This is the gradient-free half of text tokenization; :class:`~mmformer.tokenizers.text.TextTokenizer`
is the half that embeds ids into a :class:`~mmformer.tokenizers.TokenBatch`.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import sys
import warnings
from pathlib import Path
from typing import Iterable, Literal, Sequence

import sentencepiece as spm
import torch
from torch import Tensor

from mmformer.tokenizers.vocab_rules import (check_vocab_size, resolve_vocab_size, rule_exceeded, text_stats,
                                             training_error, vocab_size_warning)

# Fixed special ids, the same in every model this module trains, so configs can rely on them.
PAD_ID, UNK_ID, BOS_ID, EOS_ID = 0, 1, 2, 3

Truncation = Literal["right", "error"]


class SentencePieceVocab:
    """A trained sentencepiece model with mmformer's special ids (pad 0, unk 1, bos 2, eos 3).

    Args:
        model_file: a ``.model`` file written by :meth:`train` (or any sentencepiece model whose
            pad/unk/bos/eos ids are 0/1/2/3).
    """

    pad_id, unk_id, bos_id, eos_id = PAD_ID, UNK_ID, BOS_ID, EOS_ID

    def __init__(self, model_file: str | Path) -> None:
        path = Path(model_file)
        if not path.is_file():
            raise FileNotFoundError(
                f"sentencepiece model {path} does not exist; train one with "
                f"`mmformer train-tokenizer --input <text files> --output {path.with_suffix('')}` or "
                f"SentencePieceVocab.train(...)"
            )
        self.path: Path | None = path
        self._load(spm.SentencePieceProcessor(model_file=str(path)), str(path))

    @classmethod
    def from_bytes(cls, proto: bytes) -> "SentencePieceVocab":
        """A vocabulary from a serialized model (as kept inside checkpoints)."""
        vocab = cls.__new__(cls)
        vocab.path = None
        vocab._load(spm.SentencePieceProcessor(model_proto=proto), "the serialized model")
        return vocab

    def to_bytes(self) -> bytes:
        return self.sp.serialized_model_proto()

    def to_tensor(self) -> Tensor:
        """The serialized model as a ``(N,)`` uint8 tensor: what a checkpoint keeps (``weights_only``-safe)."""
        return torch.frombuffer(bytearray(self.to_bytes()), dtype=torch.uint8)

    @classmethod
    def from_tensor(cls, data: Tensor) -> "SentencePieceVocab":
        """The inverse of :meth:`to_tensor`."""
        return cls.from_bytes(bytes(data.numpy()))

    def _load(self, sp: spm.SentencePieceProcessor, what: str) -> None:
        self.sp = sp
        got = (sp.pad_id(), sp.unk_id(), sp.bos_id(), sp.eos_id())
        if got != (PAD_ID, UNK_ID, BOS_ID, EOS_ID):
            raise ValueError(
                f"{what} has pad/unk/bos/eos ids {got}; mmformer needs (0, 1, 2, 3) — retrain it with "
                f"SentencePieceVocab.train"
            )

    @property
    def vocab_size(self) -> int:
        return self.sp.get_piece_size()

    def __len__(self) -> int:
        return self.vocab_size

    @staticmethod
    def train(
        texts: Iterable[str],
        output: str | Path,
        vocab_size: int | None = None,
        model_type: Literal["bpe", "unigram", "char", "word"] = "bpe",
        byte_fallback: bool = True,
        character_coverage: float = 1.0,
        max_sentences: int = 2_000_000,
        user_symbols: Sequence[str] = (),
    ) -> "SentencePieceVocab":
        """Trains a model on ``texts`` and writes ``<output>.model``; reuses it when the same texts
        and settings were trained before (a fingerprint is kept in ``<output>.json``).

        Args:
            texts: training sentences, one per item (materialized once to fingerprint them).
            output: path prefix of the model files.
            vocab_size: pieces in the vocabulary, special ids and byte pieces included; None = the rule's
                size for this text (:mod:`mmformer.tokenizers.vocab_rules`, printed). A size the text
                cannot train is refused before sentencepiece runs.
            model_type: sentencepiece algorithm; ``bpe`` by default.
            byte_fallback: unseen characters become UTF-8 byte pieces instead of ``<unk>``, so any
                string round-trips (costs 256 ids of the vocabulary).
            character_coverage: fraction of characters covered by single pieces (1.0 for Latin scripts).
            max_sentences: sentences sampled for training when there are more (below that,
                training is deterministic).
            user_symbols: pieces that must never be split.
        """
        sentences = [t.strip() for t in texts if t and t.strip()]
        if not sentences:
            raise ValueError("no non-empty sentences to train a sentencepiece model on")
        options = dict(model_type=model_type, byte_fallback=byte_fallback, user_symbols=user_symbols,
                       character_coverage=character_coverage, max_sentences=max_sentences)
        stats = None
        chosen = vocab_size is None
        if chosen or rule_exceeded(sentences, vocab_size, byte_fallback, model_type):  # the text's counts are needed
            stats = text_stats(sentences, byte_fallback, user_symbols, character_coverage, max_sentences)
            # None: the rule's size (printed); a size the rule finds large: checked first, so an impossible one
            # fails with its error rather than a warning and then the error
            vocab_size = resolve_vocab_size(vocab_size, stats, **options)  # type: ignore[arg-type]
        # Before the cache check, so a rerun on the same text warns again (mmformer.tokenizers.vocab_rules).
        if stats is not None and (advice := vocab_size_warning(stats, vocab_size, byte_fallback, model_type)):
            warnings.warn(advice, stacklevel=2)
        settings: dict = dict(vocab_size=vocab_size, model_type=model_type, byte_fallback=byte_fallback,
                              character_coverage=character_coverage, max_sentences=max_sentences,
                              user_symbols=list(user_symbols))
        if chosen:  # (only then: an explicit size's fingerprint stays what it always was)
            settings["hard_vocab_limit"] = False
        fingerprint = vocab_fingerprint(sentences, settings)
        output = Path(output)
        model_path, meta_path = output.with_suffix(".model"), output.with_suffix(".json")
        if model_path.exists() and meta_path.exists():
            if json.loads(meta_path.read_text()).get("fingerprint") == fingerprint:
                return SentencePieceVocab(model_path)
        if stats is None:  # an impossible size fails here, not after sentencepiece's whole run
            stats = text_stats(sentences, byte_fallback, user_symbols, character_coverage, max_sentences)
            check_vocab_size(vocab_size, stats, **options)  # type: ignore[arg-type]
        output.parent.mkdir(parents=True, exist_ok=True)
        print(f"training a {vocab_size}-piece {model_type} sentencepiece model on {len(sentences):,} sentences "
              f"→ {model_path}", file=sys.stderr)
        model = io.BytesIO()
        try:
            # A chosen size is a ceiling (hard_vocab_limit off): a unigram model may keep fewer pieces on small text.
            spm.SentencePieceTrainer.train(
                sentence_iterator=iter(sentences), model_writer=model, vocab_size=vocab_size,
                model_type=model_type, byte_fallback=byte_fallback, character_coverage=character_coverage,
                input_sentence_size=max_sentences, shuffle_input_sentence=True, seed_sentencepiece_size=1_000_000,
                pad_id=PAD_ID, unk_id=UNK_ID, bos_id=BOS_ID, eos_id=EOS_ID,
                user_defined_symbols=list(user_symbols), num_threads=1, hard_vocab_limit=not chosen,
                minloglevel=2,
            )
        except RuntimeError as err:
            raise ValueError(training_error(str(err), vocab_size, len(sentences))) from err
        # Written under a name of this process, then renamed (atomic): a crash never leaves a half-written file,
        # and processes training the same model at once (DDP ranks each calling setup) never share a temp file.
        for path, data in ((model_path, model.getvalue()),
                           (meta_path, json.dumps({"fingerprint": fingerprint, **settings}, indent=1).encode())):
            tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
            tmp.write_bytes(data)
            tmp.replace(path)
        vocab = SentencePieceVocab(model_path)
        if chosen and len(vocab) < vocab_size:
            print(f"vocab_size not set: the {model_type} model kept {len(vocab)} of the {vocab_size} pieces chosen "
                  f"(all this text gives it)", file=sys.stderr)
        return vocab

    def id_to_piece(self, i: int) -> str:
        return self.sp.id_to_piece(int(i))

    def encode(self, texts: Sequence[str]) -> list[list[int]]:
        """Strings → id lists (no bos/eos). An empty string gives an empty list."""
        if isinstance(texts, str):
            raise TypeError("encode takes a list of strings; wrap a single string in a list")
        return self.sp.encode(list(texts))

    def decode(self, ids: Tensor | Sequence[Sequence[int]]) -> list[str]:
        """Id rows → strings. Stops at the first eos; pad and bos ids are dropped."""
        rows = ids.tolist() if isinstance(ids, Tensor) else [list(r) for r in ids]
        out = []
        for row in rows:
            if EOS_ID in row:
                row = row[: row.index(EOS_ID)]
            out.append(self.sp.decode([i for i in row if i not in (PAD_ID, BOS_ID)]))
        return out

    def batch(
        self,
        texts: Sequence[str],
        bos: bool = False,
        eos: bool = True,
        max_len: int | None = None,
        truncation: Truncation = "right",
    ) -> Tensor:
        """Strings → right-padded ids ``(B, T)`` long, T = the longest row (pad = 0).

        Args:
            texts: the batch.
            bos, eos: add the begin/end-of-sequence ids around each row.
            max_len: longest row kept, bos/eos included; None = no limit.
            truncation: ``right`` drops pieces past ``max_len`` (eos is kept as the last id), ``error``
                raises naming the row.
        """
        return pad_rows([self.wrap(r, bos, eos, max_len, truncation, i) for i, r in enumerate(self.encode(texts))])

    @staticmethod
    def wrap(ids: list[int], bos: bool, eos: bool, max_len: int | None, truncation: Truncation = "right",
             row: int = 0) -> list[int]:
        """Adds bos/eos to one id list and applies the truncation policy."""
        budget = None if max_len is None else max_len - int(bos) - int(eos)
        if budget is not None and len(ids) > budget:
            if truncation == "error":
                raise ValueError(f"row {row} has {len(ids)} pieces, more than max_len={max_len} allows "
                                 f"(with bos/eos); shorten it or set truncation='right'")
            ids = ids[:budget]
        return [BOS_ID] * bos + ids + [EOS_ID] * eos


def vocab_fingerprint(sentences: Sequence[str], settings: dict) -> str:
    """The cache key of a trained model: sha256 of the sorted-key JSON ``settings``, then each sentence + newline."""
    digest = hashlib.sha256(json.dumps(settings, sort_keys=True).encode())
    for s in sentences:
        digest.update(s.encode())
        digest.update(b"\n")
    return digest.hexdigest()


def pad_rows(rows: Sequence[Sequence[int]], pad_id: int = PAD_ID) -> Tensor:
    """Id lists → right-padded ``(B, T)`` long tensor (T ≥ 1)."""
    width = max(1, max((len(r) for r in rows), default=0))
    out = torch.full((len(rows), width), pad_id, dtype=torch.long)
    for i, r in enumerate(rows):
        if r:
            out[i, : len(r)] = torch.as_tensor(r, dtype=torch.long)
    return out

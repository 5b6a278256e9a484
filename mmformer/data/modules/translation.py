"""Translation DataModule: parallel text → pre-encoded ids → token-budget batches, exactly resumable.

Batches are dicts::

    source       (B, S) long  source ids + [eos], right-padded with 0
    target       (B, T) long  [bos] + target ids + [eos], right-padded with 0   (not in predict batches)
    source_text  list[str]    the source sentences
    target_text  list[str]    the reference translations (untruncated)            (not in predict batches)
    id           list[str]    1-based row number of each pair in its file

Every split is encoded once in ``setup`` and kept as one flat id tensor plus offsets, so a batch is a
single vectorized gather. Training batches hold up to ``max_tokens`` padded tokens (``B * max(S, T)``):
the epoch's permutation (seeded by ``seed`` and the epoch) is cut into chunks, each chunk sorted by
length and cut into batches, and the batches are shuffled — so the order depends only on
(seed, epoch), and a checkpoint taken mid-epoch resumes at the next batch. Under DDP every rank
gets a disjoint, equally long list of batches; evaluation shards are disjoint and unpadded.
"""

from __future__ import annotations

import hashlib
import json
import warnings
from pathlib import Path
from typing import Any, ClassVar, Literal

import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from mmformer.data.common.batching import EvalBatchSampler, TokenBudgetBatchSampler
from mmformer.data.common.embedded import Builder, build_embedded
from mmformer.data.common.ids import Ragged, wrap_rows
from mmformer.data.common.loading import world_of
from mmformer.data.common.packing import MarkPacked
from mmformer.data.common.sampling import ResumableDataModule
from mmformer.data.readers.text_pairs import TextPairs, read_pairs, read_sources
from mmformer.data.shards.reading import has_split, read_columns, split_view
from mmformer.data.spec import DataSpec, ProvidesDataSpec
from mmformer.tokenizers.sentencepiece_vocab import SentencePieceVocab
from mmformer.tokenizers.vocab_rules import check_vocab_size

PathLike = str | list[str] | None


class EncodedPairs(Dataset):
    """Encoded pairs read a batch at a time: ``dataset[list_of_indices]`` is the collated batch dict.

    Args:
        source: ``[ids + eos]`` per pair.
        target: ``[bos + ids + eos]`` per pair, or None (prediction inputs).
        pairs: the texts and row numbers.
    """

    def __init__(self, source: Ragged, target: Ragged | None, pairs: TextPairs) -> None:
        self.source, self.target, self.pairs = source, target, pairs

    def __len__(self) -> int:
        return len(self.pairs)

    def lengths(self) -> Tensor:
        """``(N,)`` the longer side of each pair, in tokens: what a batch's padding is sized by."""
        n = self.source.lengths
        return n if self.target is None else torch.maximum(n, self.target.lengths)

    def __getitem__(self, batch: list[int]) -> dict:
        idx = torch.as_tensor(batch, dtype=torch.long)
        out = {"source": self.source.pad(idx), "source_text": [self.pairs.sources[i] for i in batch],
               "id": [str(self.pairs.rows[i]) for i in batch]}
        if self.target is not None:
            out["target"] = self.target.pad(idx)
            out["target_text"] = [self.pairs.targets[i] for i in batch]
        return out


def encode_side(vocab: SentencePieceVocab, texts: list[str], pairs: TextPairs, side: str, bos: bool, max_len: int,
                truncation: str) -> Ragged:
    """Encodes one side of a split once: ``[bos] + ids + [eos]`` rows, truncation policy applied.

    ``right`` cuts each over-long row to ``max_len`` (eos kept last) and warns once with the count;
    ``error`` raises naming the file and row of the first over-long sentence.
    """
    rows = vocab.encode(texts)
    budget = max_len - 1 - int(bos)
    over = [i for i, r in enumerate(rows) if len(r) > budget]
    if over and truncation == "error":
        i = over[0]
        raise ValueError(f"{pairs.name}, row {pairs.rows[i]}: the {side} has {len(rows[i])} pieces, more than "
                         f"max_{side}_len={max_len} allows with {'bos/eos' if bos else 'eos'}; shorten it, raise "
                         f"max_{side}_len, or set truncation='right' ({len(over)} such rows)")
    if over:
        warnings.warn(f"{pairs.name}: truncated {len(over)} {side}(s) to max_{side}_len={max_len} tokens "
                      f"(first at row {pairs.rows[over[0]]})", stacklevel=2)
    return wrap_rows(rows, bos, max_len)


def _file_identity(path: PathLike) -> list:
    paths = [path] if isinstance(path, str) else list(path or [])
    return [[str(Path(p).resolve()), Path(p).stat().st_size, Path(p).stat().st_mtime_ns] for p in paths]


class TranslationData(ResumableDataModule, ProvidesDataSpec):
    """Parallel text for sequence-to-sequence training: files, shards, or an embedded corpus builder's splits.

    Args:
        train, val, test: a ``.tsv`` (``source<TAB>target``) or ``.jsonl`` file, or a
            ``[source_file, target_file]`` pair of line-aligned text files (see
            :mod:`mmformer.data.readers.text_pairs`). With a ``train`` and no ``val``, ``val_size`` pairs (at
            most a tenth) are held out from it (seeded; pairs sharing their sources are removed from training).
        embedded: with ``train`` None, a corpus builder (:mod:`mmformer.data.common.embedded`; the recipe's is
            ``corpora.apertium.WordNetCorpus``) whose ``.tsv`` splits fill in a None val/test.
        src_key, tgt_key: JSONL keys (and the TSV header row that is skipped).
        data_dir: cache folder for the embedded corpus and the sentencepiece models.
        vocab_size: pieces per sentencepiece model (byte fallback included, so any character encodes); None =
            the size the vocabulary rule gives the training text (:mod:`mmformer.tokenizers.vocab_rules`).
        shared_vocab: one model trained on both sides; else one per side (``source_vocab`` ≠ ``vocab``).
        max_source_len, max_target_len: longest rows in tokens, eos (and bos) included.
        truncation: ``right`` cuts longer rows (with a warning giving the count); ``error`` raises.
        max_tokens: padded tokens per training batch (``B * max(S, T)``); batches are length-bucketed.
        batch_size: sentences per validation/test/predict batch.
        limit_train: use only the first N training pairs (smoke tests); the tokenizer sees only them.
        predict: source sentences to translate, one per line, or ``-`` for stdin.
        num_workers: DataLoader worker processes.
        pack_len: pack each training batch's samples into rows of at most this many tokens (per side:
            source and target), each attending only within itself (:mod:`mmformer.data.common.packing`);
            no compute is spent on padding. None = padded batches (the default). Losses are unchanged.
        seed: training order and the held-out validation of a user ``train``; epoch ``e``'s order
            depends only on (seed, e). The embedded corpus and its splits do not depend on it.
        val_size: pairs held out of ``train`` for validation when ``val`` is None.
        shards: read ``<shards>/{train,val,test}`` prepared by ``mmformer prepare pairs`` (a folder or an
            ``s3://``/``gs://``... URI) instead of the paths; without ``<shards>/val`` validation is held out of
            train as for a ``train`` alone. The same pairs give the same vocabulary and batches.
    """

    _resume_unit = "batches"  # token/length-bucketed batches vary in size
    # options of earlier versions: a run's old config.yaml names its new place (cli/errors.py)
    renamed_args: ClassVar[dict[str, str]] = {
        "train_path": "train", "val_path": "val", "test_path": "test", "predict_path": "predict",
        "max_sentences": "embedded.init_args.max_sentences", "test_size": "embedded.init_args.test_size"}

    def __init__(
        self,
        train: str | list[str] | None = None,
        val: str | list[str] | None = None,
        test: str | list[str] | None = None,
        embedded: Builder | str | None = None,
        src_key: str = "src",
        tgt_key: str = "tgt",
        data_dir: str = "data",
        vocab_size: int | None = None,
        shared_vocab: bool = True,
        max_source_len: int = 128,
        max_target_len: int = 128,
        truncation: Literal["right", "error"] = "right",
        max_tokens: int = 4096,
        batch_size: int = 64,
        limit_train: int | None = None,
        predict: str | None = None,
        num_workers: int = 0,
        pack_len: int | None = None,
        seed: int = 0,
        val_size: int = 1000,
        shards: str | None = None,
    ) -> None:
        super().__init__()
        if truncation not in ("right", "error"):
            raise ValueError(f"truncation must be 'right' or 'error', got {truncation!r}")
        if min(max_source_len, max_target_len) < 3:
            raise ValueError("max_source_len and max_target_len must be at least 3 (bos, a piece, eos)")
        for name, value in (("batch_size", batch_size), ("limit_train", limit_train)):
            if value is not None and value < 1:
                raise ValueError(f"{name} must be at least 1, got {value}")
        if max_tokens < max(max_source_len, max_target_len):
            raise ValueError(f"max_tokens={max_tokens} cannot hold one pair of max_source_len={max_source_len} / "
                             f"max_target_len={max_target_len} tokens; raise max_tokens or lower the lengths")
        if train is None and embedded is None and shards is None:
            raise ValueError("set data.init_args.train (a file), data.init_args.embedded (a corpus builder) or "
                             "data.init_args.shards")
        self.train_path, self.val_path, self.test_path = train, val, test
        self.embedded = embedded
        self._built: dict[str, Any] | None = None  # what the builder returned
        self.src_key, self.tgt_key, self.data_dir = src_key, tgt_key, data_dir
        self._vocab_size, self.shared_vocab = vocab_size, shared_vocab
        self.max_source_len, self.max_target_len, self.truncation = max_source_len, max_target_len, truncation
        self.max_tokens, self.batch_size, self.limit_train = max_tokens, batch_size, limit_train
        self.predict_path, self.num_workers, self.seed = predict, num_workers, seed
        self.pack_len, self.shards = pack_len, shards
        self.val_size = val_size
        self.vocab: SentencePieceVocab | None = None
        self.source_vocab: SentencePieceVocab | None = None
        self.datasets: dict[str, EncodedPairs] = {}
        self._pairs: dict[str, TextPairs] = {}

    @property
    def vocab_size(self) -> int | None:
        """Target vocabulary size (the configured one until the model is trained, then the model's)."""
        return self._vocab_size if self.vocab is None else len(self.vocab)

    @property
    def source_vocab_size(self) -> int | None:
        return self._vocab_size if self.source_vocab is None else len(self.source_vocab)

    # --- reading ------------------------------------------------------------------------------
    def _embedded(self, split: str) -> str:
        """The builder's file of ``split`` (built once; the builder caches the corpus)."""
        if self._built is None:
            splits = ("train", "val", "test")
            self._built = build_embedded(self.embedded, self.data_dir, splits)  # type: ignore[arg-type]
        return str(self._built[split])

    def _split(self, split: str) -> TextPairs:
        """The pairs of ``split`` in {"train", "val", "test"} (train after the held-out carve and limit_train)."""
        if split not in self._pairs:  # read once: prepare_data and setup both need the training pairs
            self._pairs[split] = self._read_split(split)
        return self._pairs[split]

    def _carved(self) -> bool:
        """Validation is held out of the training pairs (a user training source without a validation one)."""
        if self.shards is not None:
            return not has_split(self.shards, "val")
        return self.train_path is not None and self.val_path is None

    def _read_split(self, split: str) -> TextPairs:
        if self.shards is not None:
            pairs = self._held_out(split) if split != "test" and self._carved() else self._shard_pairs(split)
            if not len(pairs):
                raise ValueError(self._empty_hint(split, pairs.name))
            return pairs.head(self.limit_train) if split == "train" else pairs
        path = {"train": self.train_path, "val": self.val_path, "test": self.test_path}[split]
        if path is None and self.train_path is None:
            path = self._embedded(split)  # the embedded corpus fills any split left None
        if path is None and split == "test":
            raise ValueError("no test data: set data.init_args.test (a .tsv/.jsonl file or a "
                             "[source, target] pair of text files)")
        if self._carved() and split != "test":
            pairs = self._held_out(split)
        else:
            pairs = read_pairs(path, self.src_key, self.tgt_key)  # type: ignore[arg-type]
        if not len(pairs):
            raise ValueError(self._empty_hint(split, pairs.name))
        return pairs.head(self.limit_train) if split == "train" else pairs

    def _empty_hint(self, split: str, name: str) -> str:
        """What to do about a split that has no usable pair (checked in setup, before any step runs)."""
        what = f"{name}: the {split} split has no pairs (the file is empty, or every row is blank or has an empty side)"
        if split == "val" and self.val_path is None:  # held out from a user training file
            return (f"{what}: the training file is too small to hold out validation (a tenth of it, at most "
                    f"val_size={self.val_size}); add rows or set data.init_args.val")
        how = {"train": "put source<TAB>target rows in it (or a .jsonl/[source, target] pair), or leave "
                        "data.init_args.train unset for the embedded corpus",
               "val": "put source<TAB>target rows in it, or leave data.init_args.val unset to hold validation "
                      "out of the training file",
               "test": "put source<TAB>target rows in it, or point data.init_args.test at a non-empty file"}[split]
        return f"{what}; {how}"

    def _held_out(self, split: str) -> TextPairs:
        """A user training file without val_path: ``val_size`` pairs (at most a tenth) held out, seeded;
        training drops every pair whose source is in the held-out set."""
        pairs = (self._shard_pairs("train") if self.shards is not None
                 else read_pairs(self.train_path, self.src_key, self.tgt_key))  # type: ignore[arg-type]
        perm = torch.randperm(len(pairs), generator=torch.Generator().manual_seed(self.seed)).tolist()
        val = sorted(perm[: min(self.val_size, len(pairs) // 10)])
        held = {pairs.sources[i] for i in val}
        keep = val if split == "val" else [i for i in range(len(pairs)) if pairs.sources[i] not in held]
        name = pairs.name + (" (held-out validation)" if split == "val" else "")
        return TextPairs([pairs.sources[i] for i in keep], [pairs.targets[i] for i in keep],
                         [pairs.rows[i] for i in keep], name)

    def _shard_pairs(self, split: str) -> TextPairs:
        """The pairs of ``<shards>/<split>`` with their rows in the prepared file (checked before reading)."""
        assert self.shards is not None
        view = split_view(self.shards, split, "text_pairs", ["src", "tgt", "row"])
        cols = read_columns(view, ["src", "tgt", "row"])
        return TextPairs(cols["src"], cols["tgt"], [int(r) for r in cols["row"]], view.uri)

    def _train_vocabs(self, train: TextPairs) -> None:
        """Trains (or reuses, fingerprinted) the sentencepiece model(s) on the training pairs."""
        if self.shards is not None:  # the prepared source's fingerprint
            ident: list = [split_view(self.shards, "train", "text_pairs").info.source]
        else:
            ident = (_file_identity(self.train_path) if self.train_path is not None
                     else [Path(self._embedded("train")).parent.name])  # the corpus folder's (settings-hashed) name
        carved = self._carved()  # then seed/val_size pick the training pairs
        size = "auto" if self._vocab_size is None else self._vocab_size  # None: the rule's size per model
        key = json.dumps([ident, [self.seed, self.val_size] if carved else None, self.limit_train, size,
                          self.src_key, self.tgt_key])
        digest = hashlib.sha256(key.encode()).hexdigest()[:12]
        prefix = Path(self.data_dir) / "tokenizers" / f"spm{size}-{digest}"
        if self.shared_vocab:
            self.vocab = self.source_vocab = SentencePieceVocab.train(
                train.sources + train.targets, f"{prefix}-shared", self._vocab_size)
        else:
            self.source_vocab = SentencePieceVocab.train(train.sources, f"{prefix}-source", self._vocab_size)
            self.vocab = SentencePieceVocab.train(train.targets, f"{prefix}-target", self._vocab_size)

    def _needed(self, stage: str | None) -> list[str]:
        """The splits ``stage`` reads (None: every split there is)."""
        has_test = self.test_path is not None or self.train_path is None  # shards: <shards>/test
        return {"fit": ["train", "val"], "validate": ["val"], "test": ["test"], "predict": []}.get(
            stage or "", ["train", "val"] + ["test"] * has_test)

    def prepare_data(self) -> None:
        """Builds the embedded corpus and trains the tokenizer(s) once (rank 0; cached on disk).

        The splits the run needs are read first, so an empty one fails before tokenizer training."""
        fn = self.trainer.state.fn if self.trainer is not None else None
        train = self._split("train")
        if self._vocab_size is not None:  # a size the text cannot train fails before the other splits are read
            sides = [train.sources + train.targets] if self.shared_vocab else [train.sources, train.targets]
            for texts in sides:
                check_vocab_size(self._vocab_size, texts)
        for split in self._needed(fn.value if fn is not None else None):
            self._split(split)
        self._train_vocabs(train)

    def _encode(self, pairs: TextPairs, with_target: bool = True) -> EncodedPairs:
        assert self.vocab is not None and self.source_vocab is not None
        src = encode_side(self.source_vocab, pairs.sources, pairs, "source", False, self.max_source_len,
                          self.truncation)
        tgt = (encode_side(self.vocab, pairs.targets, pairs, "target", True, self.max_target_len, self.truncation)
               if with_target else None)
        return EncodedPairs(src, tgt, pairs)

    def setup(self, stage: str | None = None) -> None:
        """Loads the tokenizer(s) and encodes the splits ``stage`` needs (each once)."""
        needed = self._needed(stage)
        for split in needed:  # read (and checked) before tokenizer training: an empty split fails at once
            self._split(split)
        train = self._split("train")
        if self.vocab is None:
            self._train_vocabs(train)
        for split in needed:
            if split not in self.datasets:
                self.datasets[split] = self._encode(train if split == "train" else self._split(split))
        if stage == "predict" and "predict" not in self.datasets:
            if self.predict_path is None:
                raise ValueError("set data.init_args.predict to a file of source sentences (one a line), "
                                 "or - for stdin")
            self.datasets["predict"] = self._encode(read_sources(self.predict_path), with_target=False)

    # --- loaders ------------------------------------------------------------------------------
    def train_dataloader(self) -> DataLoader:
        ds = self.datasets["train"]
        sampler = TokenBudgetBatchSampler(ds.lengths(), self.max_tokens, self.seed, *world_of(self.trainer))
        return self._batch_loader(ds, sampler, MarkPacked(self.pack_len) if self.pack_len is not None else None,
                                  train=True)

    def _eval_loader(self, split: str, sort: bool = True) -> DataLoader:
        ds = self.datasets[split]
        sampler = EvalBatchSampler(len(ds), self.batch_size, ds.lengths() if sort else None, *world_of(self.trainer))
        return self._batch_loader(ds, sampler)

    def val_dataloader(self) -> DataLoader:
        return self._eval_loader("val")

    def test_dataloader(self) -> DataLoader:
        return self._eval_loader("test")

    def predict_dataloader(self) -> DataLoader:
        return self._eval_loader("predict", sort=False)

    # --- what a task must match -----------------------------------------------------------------
    def data_spec(self) -> DataSpec:
        """``vocab`` (the target model) and ``source_vocab`` (the same object when ``shared_vocab``)."""
        return DataSpec(vocab=self.vocab, source_vocab=self.source_vocab)

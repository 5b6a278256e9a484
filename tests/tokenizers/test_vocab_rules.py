"""The vocabulary-size rule: a warning when the training text is too small for the pieces asked for, and a
sentencepiece failure turned into an error naming the largest (or smallest) size that works."""

from __future__ import annotations

import random
import warnings
from pathlib import Path

import pytest

from mmformer.cli.train_tokenizer import main as train_tokenizer
from mmformer.tokenizers.sentencepiece_vocab import SentencePieceVocab
from mmformer.tokenizers.vocab_rules import MIN_WORDS_PER_PIECE, suggested_vocab_size, vocab_size_warning


def _text(n_sentences: int, n_words: int = 400, seed: int = 0) -> list[str]:
    """Sentences of 6 words drawn from ``n_words`` made-up words."""
    rng = random.Random(seed)
    words = ["".join(rng.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(rng.randint(3, 8)))
             for _ in range(n_words)]
    return [" ".join(rng.choice(words) for _ in range(6)) for _ in range(n_sentences)]


def test_the_rule_warns_below_its_words_per_piece_and_suggests_a_size_that_passes() -> None:
    text = _text(2000)  # 12,000 running words
    advice = vocab_size_warning(text, 1000, byte_fallback=False)
    assert advice is not None and "12,000 running words" in advice and f"below the {MIN_WORDS_PER_PIECE}" in advice
    suggested = suggested_vocab_size(12_000, byte_fallback=False)
    assert f"vocab_size <= {suggested}" in advice
    assert vocab_size_warning(text, suggested, byte_fallback=False) is None  # the suggestion passes the rule
    assert vocab_size_warning(text, suggested + 256, byte_fallback=True) is None  # byte pieces are not learned
    assert vocab_size_warning(text, 1000, byte_fallback=False, model_type="char") is None


def test_training_warns_every_time_even_when_the_model_is_cached(tmp_path: Path) -> None:
    text = _text(2000)
    for _ in range(2):  # the second call reuses the cached model
        with pytest.warns(UserWarning, match=r"vocab_size=200 is large for this training text: 12,000 running words "
                                             r"\(400 distinct\)"):
            SentencePieceVocab.train(text, tmp_path / "m", vocab_size=200, byte_fallback=False)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a size within the rule trains silently
        SentencePieceVocab.train(text, tmp_path / "ok", vocab_size=60, byte_fallback=False)


def test_a_size_the_bounds_let_through_but_sentencepiece_cannot_reach_names_the_largest_that_works(
        tmp_path: Path) -> None:
    text = ["a red circle above a blue square", "two small blue circles"] * 50  # BPE forms 84 pieces, bound 120
    with pytest.raises(ValueError, match=r"supports at most (\d+) pieces; set vocab_size <= \1") as info:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            SentencePieceVocab.train(text, tmp_path / "big", vocab_size=100, byte_fallback=False)
    largest = int(str(info.value).split("supports at most ")[1].split()[0])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert SentencePieceVocab.train(text, tmp_path / "fits", vocab_size=largest, byte_fallback=False).vocab_size \
            == largest  # the size named works


def test_the_train_tokenizer_command_prints_the_error(tmp_path: Path, capsys) -> None:
    corpus = tmp_path / "c.txt"
    corpus.write_text("a red circle\ntwo blue squares\n" * 30)
    assert train_tokenizer(["--input", str(corpus), "--output", str(tmp_path / "m"), "--vocab-size", "2000"]) == 2
    assert "vocab_size=2000 is more than this training text can fill" in capsys.readouterr().err


def test_no_warning_suggests_a_size_that_is_not_smaller() -> None:
    text = ["the quick brown fox jumps over the lazy dog"] * 20  # 180 words: too few for any vocabulary
    assert vocab_size_warning(text, 10, byte_fallback=False) is None
    assert vocab_size_warning(text, 40, byte_fallback=False) is not None  # 40 > the 31 its characters need


def _train_same(folder: str, barrier, results) -> None:
    """One of several processes training the same model; each waits after writing a temp file until all
    have, so every rename happens after every write (the interleaving that broke a shared temp name)."""
    write_bytes = Path.write_bytes

    def write_then_wait(self: Path, data: bytes) -> int:
        n = write_bytes(self, data)
        if self.name.endswith(".tmp"):
            barrier.wait(timeout=60)
        return n

    Path.write_bytes = write_then_wait  # this forked process only
    texts = [f"{a} {b} {c}" for a in "abcdefgh" for b in "ijklmnop" for c in ("zero", "one", "two")] * 3
    try:
        vocab = SentencePieceVocab.train(texts, f"{folder}/same", vocab_size=40, model_type="bpe", byte_fallback=False)
        results.put(vocab.encode(["a i one"])[0])
    except Exception as e:  # noqa: BLE001 - reported to the test
        results.put(f"{type(e).__name__}: {e}")


def test_processes_training_the_same_vocabulary_at_once_all_get_it(tmp_path: Path) -> None:
    """DDP ranks that each call ``setup`` train the same model at once: no shared temp file, one result."""
    import multiprocessing as mp

    ctx = mp.get_context("fork")
    barrier, results = ctx.Barrier(3), ctx.Queue()
    procs = [ctx.Process(target=_train_same, args=(str(tmp_path), barrier, results)) for _ in range(3)]
    for proc in procs:
        proc.start()
    got = [results.get(timeout=120) for _ in procs]
    for proc in procs:
        proc.join(timeout=60)
    assert all(isinstance(g, list) and g == got[0] for g in got), got
    assert sorted(p.name for p in tmp_path.iterdir()) == ["same.json", "same.model"]  # no temp file left

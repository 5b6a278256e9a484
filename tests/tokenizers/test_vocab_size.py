"""The vocabulary size: the rule's size when none is given, and an impossible size refused before sentencepiece
runs, with advice that names sizes that work and never contradicts itself."""

from __future__ import annotations

import io
import json
import random
import re
import warnings
from pathlib import Path

import pytest
import sentencepiece as spm

from mmformer.tokenizers import sentencepiece_vocab
from mmformer.tokenizers.sentencepiece_vocab import SentencePieceVocab, vocab_fingerprint
from mmformer.tokenizers.vocab_rules import (check_vocab_size, resolve_vocab_size, size_range, suggested_vocab_size,
                                             text_stats, vocab_size_warning)

SHAPES = ["a red circle above a blue square", "two small blue circles"] * 50  # 17 characters, 9 distinct words
FOX = ["the quick brown fox jumps over the lazy dog"] * 20  # 27 characters (▁ included), 180 running words


def _text(n_sentences: int, n_words: int = 400, seed: int = 0) -> list[str]:
    """Sentences of 6 words drawn from ``n_words`` made-up words."""
    rng = random.Random(seed)
    words = ["".join(rng.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(rng.randint(3, 8)))
             for _ in range(n_words)]
    return [" ".join(rng.choice(words) for _ in range(6)) for _ in range(n_sentences)]


@pytest.fixture
def no_sentencepiece(monkeypatch: pytest.MonkeyPatch) -> None:
    """Sentencepiece's trainer fails the test if it runs: what is refused must be refused before it."""
    def ran(**_: object) -> None:
        raise AssertionError("sentencepiece's trainer ran")

    monkeypatch.setattr(sentencepiece_vocab.spm.SentencePieceTrainer, "train", ran)


def _quiet_train(*args: object, **kwargs: object) -> SentencePieceVocab:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return SentencePieceVocab.train(*args, **kwargs)  # type: ignore[arg-type]


def test_no_size_given_trains_the_rules_size_and_says_so(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    text = _text(2000)  # 12,000 running words: the rule allows 80 learned pieces
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the chosen size never draws the rule's warning
        vocab = SentencePieceVocab.train(text, tmp_path / "auto", byte_fallback=False)
    assert len(vocab) == suggested_vocab_size(12_000, byte_fallback=False) == 84
    assert resolve_vocab_size(None, text, byte_fallback=False) == 84
    assert ("vocab_size not set: chose 84 for 12,000 running words (rule: learned pieces <= running words / 150"
            in capsys.readouterr().err)
    assert vocab.decode(vocab.batch(text[:3])) == text[:3]  # it encodes and decodes the text


def test_no_size_given_stays_within_what_the_text_needs_and_forms(tmp_path: Path) -> None:
    # 180 running words give 8 learned pieces by the rule, but the 27 characters need 31 ids with the specials
    assert resolve_vocab_size(None, FOX, byte_fallback=False) == 31
    assert len(_quiet_train(FOX, tmp_path / "fox", byte_fallback=False)) == 31
    # 22,000 running words of 9 distinct words: the rule's 150 learned pieces are more than BPE surely forms
    many = SHAPES * 40
    stats = text_stats(many, byte_fallback=False)
    chosen = resolve_vocab_size(None, many, byte_fallback=False)
    assert chosen == 4 + stats.chars + stats.formed(10 ** 9) < suggested_vocab_size(22_000, byte_fallback=False)
    assert len(_quiet_train(many, tmp_path / "shapes", byte_fallback=False)) == chosen
    with_bytes = resolve_vocab_size(None, many, byte_fallback=True)
    assert with_bytes == chosen + 256  # byte pieces are fixed ids, not learned ones
    assert resolve_vocab_size(None, FOX, model_type="char") == 4 + 256 + 27
    assert resolve_vocab_size(None, SHAPES, model_type="word", byte_fallback=False) == 4 + 8  # the rule's 8 < 9 words


def test_a_unigram_model_with_no_size_given_keeps_what_the_text_forms(tmp_path: Path,
                                                                      capsys: pytest.CaptureFixture) -> None:
    many = SHAPES * 40  # unigram's pruning keeps fewer pieces than BPE forms on this text
    vocab = _quiet_train(many, tmp_path / "uni", model_type="unigram", byte_fallback=False)
    chosen = resolve_vocab_size(None, many, model_type="unigram", byte_fallback=False)
    assert len(vocab) < chosen and f"the unigram model kept {len(vocab)} of the {chosen} pieces" in capsys.readouterr().err


def test_a_size_the_text_cannot_fill_is_refused_before_sentencepiece_runs(tmp_path: Path, no_sentencepiece) -> None:
    with pytest.raises(ValueError, match=r"^vocab_size=500 is more than this training text can fill: its 100 "
                                         r"sentences \(9 distinct words\) form at most 120 pieces .*; set "
                                         r"vocab_size=(\d+) \(the rule's size") as info:
        SentencePieceVocab.train(SHAPES, tmp_path / "big", vocab_size=500, byte_fallback=False)
    named = int(re.search(r"set vocab_size=(\d+)", str(info.value))[1])  # type: ignore[index]
    with pytest.raises(ValueError, match="more than this training text can fill"):  # the 8,000 a default used to be
        SentencePieceVocab.train(SHAPES, tmp_path / "default", vocab_size=8000)
    with pytest.raises(ValueError, match=r"one piece per distinct word"):
        SentencePieceVocab.train(SHAPES, tmp_path / "w", vocab_size=14, model_type="word", byte_fallback=False)
    check_vocab_size(13, SHAPES, model_type="word", byte_fallback=False)  # 4 + 9 words: allowed
    assert not list(tmp_path.iterdir())  # nothing written
    assert named == resolve_vocab_size(None, SHAPES, byte_fallback=False)  # the rule's size (trained below)


def test_the_size_a_refusal_names_trains(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"set vocab_size=(\d+)") as info:
        check_vocab_size(500, SHAPES, byte_fallback=False)
    named = int(re.search(r"set vocab_size=(\d+)", str(info.value))[1])  # type: ignore[index]
    assert len(_quiet_train(SHAPES, tmp_path / "named", vocab_size=named, byte_fallback=False)) == named


def test_a_size_below_the_alphabet_is_refused_before_sentencepiece_runs(tmp_path: Path, no_sentencepiece) -> None:
    with pytest.raises(ValueError, match=r"^vocab_size=10 is too small for this training text: its 27 distinct "
                                         r"characters and the 4 special ids need 31; set vocab_size >= 31"):
        SentencePieceVocab.train(FOX, tmp_path / "s", vocab_size=10, byte_fallback=False)
    with pytest.raises(ValueError, match=r"the 260 special and byte ids need 287; set vocab_size >= 287"):
        SentencePieceVocab.train(FOX, tmp_path / "b", vocab_size=280)
    with pytest.raises(ValueError, match=r"the 261 special, user-symbol and byte ids need 288"):
        SentencePieceVocab.train(FOX, tmp_path / "u", vocab_size=287, user_symbols=["<x>"])


def _sizes_named(message: str) -> tuple[list[int], list[int]]:
    """The sizes a message allows: (lower limits it sets, sizes it suggests or caps at)."""
    lower = [int(n) for n in re.findall(r"vocab_size >= ([\d,]+)", message.replace(",", ""))]
    found = re.findall(r"(?:set|use) vocab_size=(\d+)|vocab_size <= (\d+)|never above (\d+)", message.replace(",", ""))
    return lower, [int(n) for groups in found for n in groups if n]


def test_the_advice_never_contradicts_itself_on_a_text_too_small_for_the_rule() -> None:
    """FOX's 180 running words allow 8 learned pieces by the rule; its characters alone need 27: no size meets
    the rule. Every message names sizes at or above 31, and 31 trains."""
    messages = []
    for size in (10, 40, 5000):
        try:
            check_vocab_size(size, FOX, byte_fallback=False)
        except ValueError as err:
            messages.append(str(err))
    advice = vocab_size_warning(FOX, 40, byte_fallback=False)
    assert advice is not None and "No size meets the rule" in advice and "use vocab_size=31" in advice
    messages.append(advice)
    lowest_allowed = max(low for m in messages for low in _sizes_named(m)[0])
    suggested = [up for m in messages for up in _sizes_named(m)[1]]
    assert len(messages) == 3 and suggested and min(suggested) >= lowest_allowed == 31


def test_an_explicit_sizes_fingerprint_is_unchanged(tmp_path: Path) -> None:
    """Vocabularies cached before the rule's size existed (in data folders) are still reused: the key of an
    explicit size is the one the code computed before."""
    _quiet_train(SHAPES, tmp_path / "m", vocab_size=40, byte_fallback=False)
    before = "509dc2c1e31f4ea8737949cd343f93fad9c7deb982b2b1e8eadb5377fdb37ddf"  # computed by the code before
    assert json.loads((tmp_path / "m.json").read_text())["fingerprint"] == before
    settings = dict(vocab_size=40, model_type="bpe", byte_fallback=False, character_coverage=1.0,
                    max_sentences=2_000_000, user_symbols=[])
    assert vocab_fingerprint(SHAPES, settings) == before


def _train(text: list[str], size: int, model_type: str, hard: bool = True, **kw: object) -> int:
    model = io.BytesIO()
    spm.SentencePieceTrainer.train(sentence_iterator=iter(text), model_writer=model, vocab_size=size,
                                   model_type=model_type, pad_id=0, unk_id=1, bos_id=2, eos_id=3, num_threads=1,
                                   minloglevel=2, hard_vocab_limit=hard, **kw)
    return spm.SentencePieceProcessor(model_proto=model.getvalue()).get_piece_size()


@pytest.mark.parametrize("model_type", ["bpe", "unigram", "word"])
def test_the_bounds_hold_against_sentencepiece(model_type: str) -> None:
    """On small texts of several scripts, digits, punctuation, odd whitespace, compatibility characters and a user
    symbol: the smallest size trains and one less fails; no model, asked for all it can form, exceeds the largest;
    BPE and word models train the rule's size."""
    texts = [SHAPES, FOX, ["Ça va? Très bien, merci.", "Hello, world! It's 2024-05-01; price $3.50.",
                           "ｗｏｒｌｄ ﬁne ½", "日本語 かな カナ 漢字 <x>", "Ωμέγα αβγ",
                           "a\u00a0b c\u3000d x\u0301y\u200bz ㍱ \x01ctl"] * 10]
    for text in texts:
        kw = dict(byte_fallback=False, user_defined_symbols=["<x>"])
        stats = text_stats(text, byte_fallback=False, user_symbols=["<x>"])
        sizes = size_range(stats, model_type)
        if model_type != "word":
            assert _train(text, sizes.smallest, model_type, **kw) == sizes.smallest
            with pytest.raises(RuntimeError, match=f"smaller than required_chars. {sizes.smallest - 1} vs "
                                                   f"{sizes.smallest}"):
                _train(text, sizes.smallest - 1, model_type, **kw)
        most = _train(text, 100_000, model_type, hard=False, **kw)
        largest = sizes.largest if model_type == "word" else sizes.smallest + stats.formable(10 ** 9)
        assert most <= largest
        if model_type != "unigram":
            assert _train(text, sizes.rule, model_type, **kw) == sizes.rule

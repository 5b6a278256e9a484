"""Manifests over the espeak-ng speech corpus: English speech → Spanish text (Apertium) and audio–text pairs
with zero-shot keyword clips; fields, decodable audio, voice-disjoint splits, caching, missing packages."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from corpora import audio_captions, espeak, speech_translation
from corpora.espeak import EspeakCorpusConfig
from corpora.manifests import read_jsonl
from corpora.speech_translation import capitalize_names, clean_translation
from mmformer.data.readers.audio import load_audio

TINY = EspeakCorpusConfig(num_train=10, num_val=3, num_test=6)
WHICH = shutil.which


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("speech")


@pytest.fixture(scope="module")
def translation(root: Path) -> dict[str, Path]:
    return speech_translation.build(root, TINY, workers=1)


@pytest.fixture(scope="module")
def captions(root: Path, translation: dict[str, Path]) -> dict[str, Path]:  # after it: one shared corpus
    return audio_captions.build(root, TINY, zeroshot_per_word=1, workers=1, min_test_pool=2)


def _variant(row: dict) -> str:
    return row["voice"].split("+")[1]


def _decodes(manifest: Path, row: dict) -> None:
    wave = load_audio(manifest.parent / row["audio_filepath"], 16000)  # (L,) float at 16 kHz
    assert wave.abs().max() > 0.05
    if "duration" in row:
        assert abs(wave.numel() / 16000 - row["duration"]) < 1e-3


def test_translation_rows_pair_speech_with_a_clean_spanish_text(translation: dict[str, Path]) -> None:
    sizes = {"train": 10, "val": 3, "test": 6}
    for split, path in translation.items():
        rows = read_jsonl(path)
        assert len(rows) == sizes[split]  # every utterance of the speech corpus, none dropped
        for row in rows:
            _decodes(path, row)
            assert row["text"] and row["translation"] == row["translation"].lower()
            assert not set("*#@") & set(row["translation"])


def test_translation_policy_keeps_names_and_drops_marks() -> None:
    assert capitalize_names("call anna at five") == "call Anna at five"
    assert clean_translation("*Anna Tiene cuatro #muro") == ("anna tiene cuatro muro", True)
    assert clean_translation("dónde es su casa") == ("dónde es su casa", False)


def test_splits_are_voice_disjoint(translation: dict[str, Path], captions: dict[str, Path]) -> None:
    for built in (translation, captions):
        voices = {split: {_variant(r) for r in read_jsonl(built[split])} for split in ("train", "val", "test")}
        assert not voices["train"] & voices["test"] and not voices["train"] & voices["val"]
        assert not voices["val"] & voices["test"]
    test_voices = set(espeak.split_variants(espeak.list_variants(), TINY.val_variants, TINY.test_variants,
                                            TINY.seed)["test"])
    assert {_variant(r) for r in read_jsonl(captions["zeroshot"])} <= test_voices  # zero-shot: unseen voices too


def test_caption_pairs_have_distinct_texts_and_zeroshot_has_keywords(captions: dict[str, Path]) -> None:
    assert set(captions) == {"train", "val", "test", "zeroshot"}
    for split, path in captions.items():
        rows = read_jsonl(path)
        assert len({r["text"] for r in rows}) == len(rows) or split == "zeroshot"
        for row in rows:
            _decodes(path, row)
    zeroshot = read_jsonl(captions["zeroshot"])
    assert sorted(r["keyword"] for r in zeroshot) == sorted(audio_captions.ZEROSHOT_WORDS)
    assert all(r["text"] == r["keyword"] for r in zeroshot)


def test_too_small_a_test_pool_is_refused(root: Path) -> None:
    with pytest.raises(ValueError, match="min_test_pool=1000"):
        audio_captions.build(root, TINY, zeroshot_per_word=1, workers=1, min_test_pool=1000)


def test_second_builds_reuse_the_caches(
    root: Path, translation: dict[str, Path], captions: dict[str, Path], monkeypatch: pytest.MonkeyPatch,
) -> None:
    stamps = [p.stat().st_mtime_ns for p in (*translation.values(), *captions.values())]
    monkeypatch.setattr(speech_translation, "translate", lambda *a, **k: pytest.fail("translated again"))
    monkeypatch.setattr(audio_captions, "write_clips", lambda *a, **k: pytest.fail("synthesized again"))
    assert speech_translation.build(root, TINY) == translation
    assert audio_captions.build(root, TINY, zeroshot_per_word=1, min_test_pool=2) == captions
    assert [p.stat().st_mtime_ns for p in (*translation.values(), *captions.values())] == stamps


def test_missing_packages_are_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(shutil, "which", lambda name: None if name == "apertium" else WHICH(name))
    with pytest.raises(FileNotFoundError, match="apt-get install apertium apertium-eng-spa"):
        speech_translation.build(tmp_path, TINY)
    monkeypatch.setattr(shutil, "which", lambda name: None if name == "espeak-ng" else WHICH(name))
    with pytest.raises(RuntimeError, match="apt-get install espeak-ng"):
        audio_captions.build(tmp_path, TINY)
    with pytest.raises(RuntimeError, match="apt-get install espeak-ng"):
        speech_translation.build(tmp_path, TINY)

"""The spoken-keyword corpus: manifests with decodable WAVs, voice-disjoint splits, a build cached by its settings."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from corpora import espeak, keywords
from corpora.keywords import KeywordsConfig, build
from corpora.manifests import read_jsonl
from mmformer.data.readers.audio import load_audio

TINY = KeywordsConfig(per_word_train=2, per_word_val=1, per_word_test=1, words=("yes", "no", "cat"))


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return build(tmp_path_factory.mktemp("kw"), TINY, workers=1)


def test_rows_hold_the_fields_and_their_wavs_decode(built: dict[str, Path]) -> None:
    assert set(built) == {"train", "val", "test"}
    for split, path in built.items():
        rows = read_jsonl(path)
        per_word = {"train": 2, "val": 1, "test": 1}[split]
        assert sorted(r["keyword"] for r in rows) == sorted(TINY.words * per_word)  # balanced
        for row in rows:
            wave = load_audio(path.parent / row["audio_filepath"], 16000)  # (L,) float
            assert abs(wave.numel() / 16000 - row["duration"]) < 1e-3
            assert 0.2 < row["duration"] < 2.0 and wave.abs().max() > 0.05  # a spoken word, not silence


def test_splits_never_share_a_voice_variant(built: dict[str, Path]) -> None:
    variants = {split: {r["variant"] for r in read_jsonl(path)} for split, path in built.items()}
    meta = json.loads((built["train"].parent / "meta.json").read_text())
    held = {split: set(meta["stats"][split]["variants"]) for split in ("train", "val", "test")}
    assert not held["train"] & held["test"] and not held["train"] & held["val"] and not held["val"] & held["test"]
    for split in built:
        assert variants[split] <= held[split]


def test_a_second_build_reuses_the_cache_and_new_settings_build_anew(
    built: dict[str, Path], monkeypatch: pytest.MonkeyPatch,
) -> None:
    folder = built["train"].parent
    stamp = (folder / "meta.json").stat().st_mtime_ns
    monkeypatch.setattr(keywords, "synthesize_many", lambda *a, **k: pytest.fail("the cached corpus was rebuilt"))
    assert build(folder.parent, TINY) == built
    assert (folder / "meta.json").stat().st_mtime_ns == stamp
    with pytest.raises(BaseException, match="rebuilt"):  # another setting → another folder → a new build
        build(folder.parent, KeywordsConfig(per_word_train=3, per_word_val=1, per_word_test=1, words=("yes",)))
    assert [p for p in folder.parent.iterdir() if p.name.startswith("keywords_")] == [folder]  # nothing half-built


def test_missing_espeak_names_the_package(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(espeak.shutil, "which", lambda name: None)
    with pytest.raises(RuntimeError, match="apt-get install espeak-ng"):
        build(tmp_path, TINY)

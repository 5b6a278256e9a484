"""The audio-classification recipe's embedded default: isolated spoken keywords synthesized offline
with Debian's ``espeak-ng`` (the 35 words of Google's Speech Commands v2).

Every clip is one word spoken by a random English accent, voice variant, speed, pitch and
loudness. Splits are disjoint *by voice variant* (:func:`corpora.espeak.split_variants`):
the test split's 12 variants and the validation split's 6 are never heard in training, so test
accuracy measures recognition of unseen speakers. Each split is balanced (the same number of
clips per word). Output, in ``data/keywords_<hash of the settings>/``::

    train.jsonl  val.jsonl  test.jsonl     {"audio_filepath": "train/00042.wav", "keyword": "yes",
                                            "duration": 0.71, "voice": "en-us+m3", "variant": "m3", ...}
    train/ val/ test/                      16 kHz mono 16-bit WAV files

:func:`write_clips` (words × voices → WAV files + rows) is shared with the audio–text builder.
"""

from __future__ import annotations

import random
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Sequence

from corpora.espeak import (
    ACCENTS, BUILD_VERSION, SAMPLE_RATE, Voice, list_variants, split_variants, synthesize_many,
)
from corpora.manifests import build_once, cache_folder, write_jsonl

# Speech Commands v2's 35 words (Warden, 2018): 20 core commands and digits, 15 auxiliary words.
KEYWORDS = ("yes no up down left right on off stop go zero one two three four five six seven eight nine "
            "bed bird cat dog happy house marvin sheila tree wow backward forward follow learn visual").split()
SPLITS = ("train", "val", "test")


@dataclass(frozen=True)
class KeywordsConfig:
    """What the keyword corpus holds; every field enters the cache hash."""

    per_word_train: int = 200  # clips per word in training (35 words → 7,000 clips)
    per_word_val: int = 10  # clips per word in validation (held-out variants)
    per_word_test: int = 30  # clips per word in test (other held-out variants)
    val_variants: int = 6  # voice variants reserved for validation
    test_variants: int = 12  # voice variants reserved for test
    speed: tuple[int, int] = (120, 220)  # words per minute range
    pitch: tuple[int, int] = (15, 85)  # espeak pitch range
    amplitude: tuple[int, int] = (60, 180)  # espeak loudness range
    words: tuple[str, ...] = tuple(KEYWORDS)
    seed: int = 0  # voices and the variant split


def random_voices(n: int, variants: Sequence[str], cfg: KeywordsConfig, seed: str) -> list[Voice]:
    """``n`` seeded random voices (accent, one of ``variants``, speed, pitch, loudness; no word gap)."""
    r = random.Random(seed)
    return [Voice(r.choice(ACCENTS), r.choice(list(variants)), r.randint(*cfg.speed), r.randint(*cfg.pitch),
                  r.randint(*cfg.amplitude), 0) for _ in range(n)]


def write_clips(
    out: Path, folder: str, words: Sequence[str], voices: Sequence[Voice], workers: int = 2,
) -> list[dict]:
    """Speaks ``words[i]`` with ``voices[i]`` into ``out/folder/<i>.wav``; returns the manifest rows.

    Args:
        out: the manifest's folder (row paths are relative to it).
        folder: the subfolder for this split's WAV files.
        words: the text of each clip.
        voices: the voice of each clip (same length as ``words``).
        workers: espeak-ng processes.

    Returns:
        ``{"audio_filepath", "keyword", "duration", "voice", "variant", "speed", "pitch"}`` per clip.
    """
    from mmformer.data.readers.audio import write_wav

    if len(words) != len(voices):
        raise ValueError(f"{len(words)} words but {len(voices)} voices")
    waves = synthesize_many(list(zip(words, voices)), workers, desc=f"espeak-ng {folder}")
    (out / folder).mkdir(parents=True, exist_ok=True)
    rows = []
    for i, (word, voice, wave) in enumerate(zip(words, voices, waves)):
        name = f"{folder}/{i:05d}.wav"
        write_wav(out / name, wave.astype("float32") / 32767, SAMPLE_RATE)  # int16 samples, exactly
        rows.append({"audio_filepath": name, "keyword": word, "duration": round(len(wave) / SAMPLE_RATE, 4),
                     "voice": f"{voice.accent}+{voice.variant}", "variant": voice.variant,
                     "speed": voice.speed, "pitch": voice.pitch})
    return rows


def settings(cfg: KeywordsConfig) -> dict:
    """Everything the corpus depends on (the installed voice variants included)."""
    return {"v": BUILD_VERSION, "keywords_v": 1, **asdict(cfg), "variants": list_variants()}


def build(data_dir: str | Path = "data", cfg: KeywordsConfig = KeywordsConfig(), workers: int = 2) -> dict[str, Path]:
    """Synthesizes (once) the keyword corpus; returns ``{"train"|"val"|"test": manifest path}``.

    Args:
        data_dir: where the settings-hashed corpus folder goes.
        cfg: clips per word, voice ranges, the words and the seed.
        workers: espeak-ng processes (single-threaded: one clip per process at a time).
    """
    s = settings(cfg)
    groups = split_variants(s["variants"], cfg.val_variants, cfg.test_variants, cfg.seed)
    per_word = {"train": cfg.per_word_train, "val": cfg.per_word_val, "test": cfg.per_word_test}

    def make(tmp: Path, _final: Path) -> dict:
        stats = {}
        for split in SPLITS:
            words = [w for w in cfg.words for _ in range(per_word[split])]
            random.Random(f"{cfg.seed}-order-{split}").shuffle(words)  # no long runs of one word
            voices = random_voices(len(words), groups[split], cfg, f"{cfg.seed}-{split}")
            rows = write_clips(tmp, split, words, voices, workers)
            stats[split] = {"clips": write_jsonl(tmp / f"{split}.jsonl", rows), "variants": groups[split],
                            "seconds": round(sum(r["duration"] for r in rows), 1)}
        return stats

    return build_once(cache_folder(data_dir, "keywords", s), SPLITS, make, s)

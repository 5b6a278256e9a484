"""The speech-recognition recipe's embedded corpus as a builder the recipe configures: espeak-ng utterances
(:mod:`corpora.espeak`), validation and test spoken by held-out espeak-ng voices or by another synthesizer
(Flite, :mod:`corpora.flite`), and optionally a share of Festival's voice in training.

Each split is ``<split>.jsonl`` (rows ``{"id", "text", "duration", "offset", "num_samples"}``) beside
``<split>.npy``, every clip of the split concatenated as int16 at 16 kHz (``offset``/``num_samples`` index it).
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal


class SpeechCorpus:
    """``SpeechCorpus(...)(data_dir) -> {"train"|"val"|"test": <split>.jsonl}``, built once into ``data_dir``.

    Args:
        num_train, num_val, num_test: utterances per split.
        seed: transcripts, voices and the variant split.
        workers: synthesis processes (espeak-ng and flite are single-threaded).
        heldout_synthesizer: who speaks validation and test: ``espeak`` (espeak-ng voice variants never heard
            in training) or ``flite`` (CMU Flite's five voices, a synthesizer never heard in training).
        festival_fraction: share of the training clips spoken by Festival's recorded-diphone voice (``ked``,
            at random rates and pitches) instead of espeak-ng; 0 = espeak-ng only.
    """

    def __init__(self, num_train: int = 20000, num_val: int = 300, num_test: int = 1000, seed: int = 0,
                 workers: int = 2, heldout_synthesizer: Literal["espeak", "flite"] = "espeak",
                 festival_fraction: float = 0.0) -> None:
        if heldout_synthesizer not in ("espeak", "flite"):
            raise ValueError(f"heldout_synthesizer must be espeak or flite, got {heldout_synthesizer!r}")
        if not 0.0 <= festival_fraction <= 1.0:
            raise ValueError(f"festival_fraction is a share of the training clips, in [0, 1]; got {festival_fraction}")
        self.num_train, self.num_val, self.num_test, self.seed = num_train, num_val, num_test, seed
        self.workers, self.heldout_synthesizer, self.festival_fraction = workers, heldout_synthesizer, festival_fraction

    def __call__(self, data_dir: Path) -> dict[str, Path]:
        from corpora.espeak import EspeakCorpusConfig, build_corpus

        cfg = EspeakCorpusConfig(num_train=self.num_train, num_val=self.num_val, num_test=self.num_test,
                                 seed=self.seed, festival_fraction=self.festival_fraction)
        folder = heldout = build_corpus(data_dir, cfg, workers=self.workers)
        if self.heldout_synthesizer == "flite":
            from corpora import flite

            fcfg = flite.FliteCorpusConfig(num_val=self.num_val, num_test=self.num_test, seed=self.seed)
            heldout = flite.build_corpus(data_dir, fcfg, workers=self.workers)
        return {"train": folder / "train.jsonl", "val": heldout / "val.jsonl", "test": heldout / "test.jsonl"}

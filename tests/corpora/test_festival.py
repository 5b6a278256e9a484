"""Festival as the embedded speech corpus's second training synthesizer: batch synthesis that follows its
rate and pitch, a mixed corpus whose other clips and transcripts stay exactly those of espeak-only, and
clear errors for a missing voice or a bad share."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from corpora import festival
from corpora.espeak import EspeakCorpusConfig, build_corpus, corpus_dir
from corpora.speech import SpeechCorpus
from tests.corpora.pitch import f0


def test_one_process_speaks_a_batch_following_rate_and_pitch() -> None:
    text = "please open the red door tomorrow"
    voices = [festival.FestivalVoice(1.3, 100), festival.FestivalVoice(0.8, 100), festival.FestivalVoice(1.0, 80),
              festival.FestivalVoice(1.0, 170)]
    slow, fast, low, high = festival.synthesize_batch([(text, v) for v in voices])
    assert slow.dtype == np.int16 and np.abs(slow).max() > 1000 and 1.0 < len(slow) / 16000 < 5
    assert 1.3 < len(slow) / len(fast) < 1.7, "Duration_Stretch scales the length"
    assert f0(high) > 1.5 * f0(low), "the intonation target moves the pitch"
    again = festival.synthesize_batch([(text, voices[0])])[0]
    assert np.array_equal(again, slow), "deterministic: a rebuilt corpus is the same corpus"


def test_mixed_corpus_keeps_transcripts_and_espeak_clips(tmp_path: Path) -> None:
    base = EspeakCorpusConfig(num_train=24, num_val=2, num_test=2)
    mixed = EspeakCorpusConfig(num_train=24, num_val=2, num_test=2, festival_fraction=0.4)
    assert corpus_dir(tmp_path, base) == corpus_dir(tmp_path, EspeakCorpusConfig(num_train=24, num_val=2, num_test=2,
                                                                                  festival_fraction=0.0))
    assert corpus_dir(tmp_path, mixed) != corpus_dir(tmp_path, base)
    folders = [build_corpus(tmp_path, cfg, workers=1) for cfg in (base, mixed)]
    rows = [[json.loads(x) for x in (f / "train.jsonl").read_text().splitlines()] for f in folders]
    audio = [np.load(f / "train.npy") for f in folders]
    assert [r["text"] for r in rows[0]] == [r["text"] for r in rows[1]]
    spoken = [r.get("synthesizer") == "festival" for r in rows[1]]
    assert 3 <= sum(spoken) <= 18
    for a, b, by_festival in zip(rows[0], rows[1], spoken):
        clip_a = audio[0][a["offset"]: a["offset"] + a["num_samples"]]
        clip_b = audio[1][b["offset"]: b["offset"] + b["num_samples"]]
        assert np.array_equal(clip_a, clip_b) != by_festival
        assert by_festival == (b.get("voice") == festival.VOICE)
    for split in ("val", "test"):  # evaluation is untouched
        assert (folders[0] / f"{split}.npy").read_bytes() == (folders[1] / f"{split}.npy").read_bytes()


def test_missing_festival_and_bad_share_are_named(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(festival, "FESTIVAL", "festival-not-installed")
    with pytest.raises(RuntimeError, match="apt-get install festival festvox-kdlpc16k"):
        build_corpus(tmp_path, EspeakCorpusConfig(num_train=8, num_val=1, num_test=1, festival_fraction=0.5), workers=1)
    with pytest.raises(ValueError, match=r"festival_fraction is a share of the training clips, in \[0, 1\]"):
        SpeechCorpus(festival_fraction=1.5)

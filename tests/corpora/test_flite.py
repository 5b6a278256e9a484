"""The held-out synthesizer (CMU Flite): clips at 16 kHz that follow their rate and pitch settings, a
cached corpus in the espeak corpus's format, and the DataModule's validation/test splits spoken by it."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from corpora import flite
from corpora.espeak import EspeakCorpusConfig, vocabulary
from corpora.espeak import build_corpus as build_espeak
from corpora.speech import SpeechCorpus
from mmformer.data.modules.speech import SpeechRecognitionData
from tests.corpora.pitch import f0 as _f0


@pytest.mark.parametrize("voice", flite.VOICES)
def test_every_voice_speaks_at_16k_and_follows_rate_and_pitch(voice: str) -> None:
    text = "please open the red door tomorrow"
    slow, fast = (flite.synthesize(text, flite.FliteVoice(voice, s, 120)) for s in (1.3, 0.8))
    assert slow.dtype == np.int16 and np.abs(slow).max() > 1000
    assert 1.3 < len(slow) / len(fast) < 1.9, "duration_stretch scales the length"  # pauses stretch less
    assert 0.8 < len(slow) / 16000 < 6  # 16 kHz (kal is synthesized at 8 kHz and resampled)
    low, high = (flite.synthesize(text, flite.FliteVoice(voice, 1.0, p)) for p in (85, 180))
    if voice == "rms":  # this clustergen voice ignores the pitch target (documented in FliteVoice)
        assert np.array_equal(low, high)
    else:
        assert _f0(high) > 1.3 * _f0(low), "int_f0_target_mean moves the pitch"


def test_corpus_is_cached_in_the_espeak_format_and_names_a_missing_flite(tmp_path: Path, monkeypatch) -> None:
    cfg = flite.FliteCorpusConfig(num_val=3, num_test=4)
    folder = flite.build_corpus(tmp_path, cfg, workers=1)
    stamp = (folder / "test.npy").stat().st_mtime_ns
    assert flite.build_corpus(tmp_path, cfg, workers=1) == folder and (folder / "test.npy").stat().st_mtime_ns == stamp
    assert flite.corpus_dir(tmp_path, flite.FliteCorpusConfig(num_val=3, num_test=4, seed=1)) != folder
    words = set(vocabulary())
    for split, n in (("val", 3), ("test", 4)):
        rows = [json.loads(x) for x in (folder / f"{split}.jsonl").read_text().splitlines()]
        audio = np.load(folder / f"{split}.npy")
        assert len(rows) == n and len(audio) == sum(r["num_samples"] for r in rows)
        assert all(r["voice"] in flite.VOICES and set(r["text"].split()) <= words for r in rows)
        assert all(abs(r["duration"] - r["num_samples"] / 16000) < 1e-3 for r in rows)
    monkeypatch.setattr(flite, "FLITE", "flite-not-installed")
    with pytest.raises(RuntimeError, match="apt-get install flite"):
        flite.build_corpus(tmp_path / "other", cfg)


@pytest.mark.filterwarnings("ignore:vocab_size=64 is large")
def test_datamodule_trains_on_espeak_and_evaluates_on_flite(tmp_path: Path) -> None:
    sizes = dict(num_train=40, num_val=3, num_test=4)
    build_espeak(tmp_path, EspeakCorpusConfig(**sizes), workers=1)
    heard, unheard = (SpeechRecognitionData(data_dir=str(tmp_path), vocab_size=64, batch_size=8,
                                            embedded=SpeechCorpus(**sizes, workers=1, heldout_synthesizer=h))
                      for h in ("espeak", "flite"))
    for dm in (heard, unheard):
        dm.setup("fit")
    assert heard.vocab.to_bytes() == unheard.vocab.to_bytes()  # one vocabulary
    train = [b for b in unheard.train_dataloader()]
    assert sum(len(b["id"]) for b in train) == 40
    flite_rows = {s: [json.loads(x) for x in (flite.corpus_dir(tmp_path, flite.FliteCorpusConfig(num_val=3, num_test=4))
                                              / f"{s}.jsonl").read_text().splitlines()] for s in ("val", "test")}
    for split, loader in (("val", unheard.val_dataloader()), ("test", unheard.test_dataloader())):
        batch = next(iter(loader))
        rows = {r["id"]: r for r in flite_rows[split]}
        assert set(batch["id"]) <= set(rows) and len(batch["id"]) == len(rows)
        first = rows[batch["id"][0]]
        assert int(batch["source"].lengths[0]) == first["num_samples"]
    espeak_test = next(iter(heard.test_dataloader()))
    assert not torch.equal(espeak_test["source"].lengths.sort().values,
                           next(iter(unheard.test_dataloader()))["source"].lengths.sort().values)
    with pytest.raises(ValueError, match="heldout_synthesizer must be espeak or flite"):
        SpeechCorpus(heldout_synthesizer="festival")  # type: ignore[arg-type]

"""Speech data: audio loading (any rate/channels), NeMo manifests and their bad inputs, batches in the
Seq2SeqTask format, length bucketing, and the embedded espeak-ng corpus (unseen test voices)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from corpora.espeak import EspeakCorpusConfig, build_corpus
from mmformer.data.common.batching import BucketBatchSampler
from mmformer.data.modules.speech import SpeechRecognitionData
from mmformer.data.readers.audio import AudioFileError, load_audio, read_manifest, write_wav
from mmformer.tokenizers.sentencepiece_vocab import BOS_ID, EOS_ID, PAD_ID


def _tone(seconds: float, rate: int, freq: float = 440.0, channels: int = 1) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    x = 0.5 * np.sin(2 * np.pi * freq * t).astype(np.float32)
    return np.stack([x, -x if channels == 2 else x], 1)[:, :channels] if channels > 1 else x


@pytest.mark.parametrize("rate", [8000, 16000, 44100])
def test_any_rate_and_stereo_become_mono_16k(tmp_path: Path, rate: int) -> None:
    path = tmp_path / "a.wav"
    stereo = _tone(0.5, rate, channels=2)
    stereo[:, 1] = stereo[:, 0]  # identical channels: the mono mix is the tone itself
    write_wav(path, stereo, rate)
    wave = load_audio(path, 16000)
    assert wave.dim() == 1 and abs(wave.numel() - 8000) <= 1
    # The 440 Hz tone survives resampling: its spectrum peaks at 440 Hz.
    spectrum = torch.fft.rfft(wave).abs()
    assert abs(int(spectrum.argmax()) * 16000 / wave.numel() - 440) < 4


def test_stereo_44k_flac_becomes_mono_16k(tmp_path: Path) -> None:
    import soundfile

    path = tmp_path / "a.flac"
    soundfile.write(str(path), _tone(0.5, 44100, channels=2), 44100)
    wave = load_audio(path, 16000)
    assert wave.dim() == 1 and abs(wave.numel() - 8000) <= 1
    assert wave.abs().max() < 1e-3  # the channels are opposite (x, -x): their mono mix cancels


def test_float_and_8bit_wavs_and_missing_files(tmp_path: Path) -> None:
    from scipy.io import wavfile

    x = _tone(0.1, 16000)
    wavfile.write(tmp_path / "f.wav", 16000, x)
    wavfile.write(tmp_path / "u8.wav", 16000, (x * 127 + 128).astype(np.uint8))
    torch.testing.assert_close(load_audio(tmp_path / "f.wav"), torch.from_numpy(x))
    torch.testing.assert_close(load_audio(tmp_path / "u8.wav"), torch.from_numpy(x), atol=0.02, rtol=0)
    with pytest.raises(AudioFileError, match="does not exist"):
        load_audio(tmp_path / "nope.wav")
    (tmp_path / "bad.wav").write_bytes(b"not audio")
    with pytest.raises(AudioFileError, match="bad.wav"):
        load_audio(tmp_path / "bad.wav")


def _manifest(folder: Path, name: str, rows: list[tuple[str, float, str]]) -> str:
    lines = []
    for i, (text, seconds, kind) in enumerate(rows):
        wav = folder / f"{name}{i}.wav"
        rate = {"8k": 8000, "44k": 44100}.get(kind, 16000)
        audio = np.zeros(int(seconds * rate), np.float32) if kind == "silent" else _tone(seconds, rate, 200 + 50 * i,
                                                                                              2 if kind == "stereo" else 1)
        write_wav(wav, audio, rate)
        lines.append(json.dumps({"audio_filepath": wav.name, "duration": seconds, "text": text}))
    path = folder / f"{name}.jsonl"
    path.write_text("\n".join(lines) + "\n")
    return str(path)


def test_missing_audio_names_the_manifest_line(tmp_path: Path) -> None:
    path = Path(_manifest(tmp_path, "m", [("a b", 0.2, ""), ("c", 0.2, "")]))
    path.write_text(path.read_text() + json.dumps({"audio_filepath": "gone.wav", "duration": 1, "text": "x"}) + "\n")
    with pytest.raises(AudioFileError, match=r"m\.jsonl:3: audio file .*gone\.wav does not exist"):
        read_manifest(path)
    path.write_text('{"duration": 1}\n')
    with pytest.raises(ValueError, match=r"m\.jsonl:1: missing key"):
        read_manifest(path)


def _data(tmp_path: Path, **kw) -> SpeechRecognitionData:
    train = _manifest(tmp_path, "train", [("hello world", 0.5, ""), ("Hello  THERE", 0.7, "stereo"),
                                          ("low world", 0.3, "8k"), ("old hero", 0.4, "44k"),
                                          ("too long", 3.0, ""), ("tiny", 0.01, "")])
    val = _manifest(tmp_path, "val", [("hello", 0.4, "silent"), ("world", 0.2, "")])
    test = _manifest(tmp_path, "test", [("hello world!", 0.5, ""), ("hello", 0.0, "")])  # an empty clip
    return SpeechRecognitionData(data_dir=str(tmp_path / "cache"), train=train, val=val,
                                 test=test, units="char", vocab_size=32, batch_size=2, max_duration=2.0,
                                 **kw)


def test_manifest_data_filters_and_builds_task_batches(tmp_path: Path) -> None:
    dm = _data(tmp_path, unknown_chars="skip")
    with pytest.warns(UserWarning, match="dropped 1 clips longer than max_duration=2.0 s, 1 shorter"):
        dm.setup("fit")
    assert len(dm.datasets["train"]) == 4 and len(dm.datasets["test"]) == 1  # "hello world!" has '!'
    batch = dm.datasets["train"][[0, 1]]
    src, target = batch["source"], batch["target"]
    assert src.lengths.tolist() == [8000, 11200] and src.waveforms.shape == (2, 11200)
    assert torch.all(src.waveforms[0, 8000:] == 0)
    assert batch["target_text"] == ["hello world", "hello there"]  # lower-cased, spaces collapsed
    assert target[:, 0].tolist() == [BOS_ID, BOS_ID]
    for row, text in zip(target.tolist(), batch["target_text"]):
        n = row.index(EOS_ID)
        assert all(t == PAD_ID for t in row[n + 1:])
        assert dm.vocab.decode([row[1:n]]) == [text]
    val = next(iter(dm.val_dataloader()))  # the silent clip decodes like any other
    assert torch.isfinite(val["source"].waveforms).all()


def test_unknown_characters_raise_by_default(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"test utterance .*has characters \['!'\]"):
        _data(tmp_path).setup("fit")


def test_empty_clip_is_kept_with_unk_policy(tmp_path: Path) -> None:
    dm = _data(tmp_path, unknown_chars="unk")
    with pytest.warns(UserWarning):
        dm.setup("test")
    batch = dm.datasets["test"][[0, 1]]
    assert sorted(batch["source"].lengths.tolist()) == [0, 8000]


def test_empty_transcripts_are_skipped_with_a_warning_naming_the_manifest_line(tmp_path: Path) -> None:
    dm = _data(tmp_path, unknown_chars="skip")
    train = Path(dm.manifests[0])  # type: ignore[index]
    rows = train.read_text().splitlines()
    blank = [json.dumps({**json.loads(rows[i]), "text": t}) for i, t in ((0, ""), (1, "   "))]
    train.write_text("\n".join([*rows, *blank]) + "\n")
    with pytest.warns(UserWarning, match=r"train: skipped 2 utterance\(s\) with an empty transcript \(first at "
                                         r".*train\.jsonl:7\)"):
        dm.setup("fit")
    assert len(dm.datasets["train"]) == 4
    assert all(t for t in dm.datasets["train"].texts)


def test_bucketing_keeps_padding_small_and_covers_each_utterance() -> None:
    durations = torch.rand(1000, generator=torch.Generator().manual_seed(0)) * 10
    sampler = BucketBatchSampler(durations, 16, shuffle=True, seed=0)
    batches = list(sampler)
    assert sorted(i for b in batches for i in b) == list(range(1000)) and len(batches) == len(sampler)

    def padding(bs: list[list[int]]) -> float:
        return sum(float(durations[b].max() * len(b) - durations[b].sum()) for b in bs) / float(durations.sum())

    random_batches = torch.randperm(1000).split(16)
    assert padding(batches) < 0.1 * padding([b.tolist() for b in random_batches])
    sampler.set_epoch(1)
    assert list(sampler) != batches  # a new order each epoch
    ranks = [list(BucketBatchSampler(durations, 16, False, num_replicas=3, rank=r)) for r in range(3)]
    assert sorted(i for r in ranks for b in r for i in b) == list(range(1000))  # evaluation: each exactly once
    train_ranks = [BucketBatchSampler(durations, 16, True, num_replicas=3, rank=r) for r in range(3)]
    assert len({len(list(s)) for s in train_ranks}) == 1 == len({len(s) for s in train_ranks})
    sampler.set_epoch(0)
    sampler.resume_at(0, 5)
    assert list(sampler) == batches[5:]


def test_espeak_corpus_holds_out_test_voices(tmp_path: Path) -> None:
    cfg = EspeakCorpusConfig(num_train=6, num_val=2, num_test=3)
    folder = build_corpus(tmp_path, cfg, workers=1)
    assert build_corpus(tmp_path, cfg, workers=1) == folder  # cached
    rows = {s: [json.loads(x) for x in (folder / f"{s}.jsonl").read_text().splitlines()] for s in ("train", "test")}
    settings = json.loads((folder / "settings.json").read_text())["variants"]
    assert not set(settings["train"]) & set(settings["test"])
    assert {r["variant"] for r in rows["test"]} <= set(settings["test"])
    audio = np.load(folder / "train.npy")
    assert audio.dtype == np.int16 and len(audio) == sum(r["num_samples"] for r in rows["train"])
    r = rows["train"][1]
    clip = audio[r["offset"]: r["offset"] + r["num_samples"]]
    assert math.isclose(r["duration"], len(clip) / 16000, abs_tol=1e-3) and np.abs(clip).max() > 1000


def _epoch(dm: SpeechRecognitionData, epoch: int, resume: tuple[int, int] | None = None) -> list[dict]:
    dm._resume = resume
    loader = dm.train_dataloader()
    loader.sampler.set_epoch(epoch)
    return list(loader)


def test_augmentation_is_seeded_per_utterance_and_epoch_and_resumes_exactly(tmp_path: Path) -> None:
    from mmformer.data.common.wave_augment import WaveAugment

    def data() -> SpeechRecognitionData:
        dm = _data(tmp_path, unknown_chars="skip", augment=WaveAugment(reverb_prob=0.5, noise_prob=0.5))
        with pytest.warns(UserWarning):
            dm.setup("fit")
        return dm

    dm, plain = data(), _data(tmp_path, unknown_chars="skip")
    with pytest.warns(UserWarning):
        plain.setup("fit")
    waves = {e: {i: w[:n] for b in _epoch(dm, e) for i, w, n in zip(b["id"], b["source"].waveforms, b["source"].lengths)}
             for e in (0, 1)}
    clean = {i: w[:n] for b in _epoch(plain, 0) for i, w, n in zip(b["id"], b["source"].waveforms, b["source"].lengths)}
    assert waves[0].keys() == waves[1].keys() == clean.keys()
    assert any(not torch.equal(waves[0][i], clean[i]) for i in clean), "the training clips are augmented"
    sounding = [i for i in clean if clean[i].abs().sum() > 0]  # (the stereo clip cancels out to silence)
    assert all(not torch.equal(waves[0][i], waves[1][i]) or torch.equal(waves[0][i], clean[i]) for i in sounding), \
        "each epoch draws anew (or leaves the clip clean in both)"
    assert any(not torch.equal(waves[0][i], waves[1][i]) for i in sounding)
    again = _epoch(data(), 1)
    for a, b in zip(_epoch(dm, 1), again):  # reproducible from the seed
        assert a["id"] == b["id"] and torch.equal(a["source"].waveforms, b["source"].waveforms)
    for a, b in zip(_epoch(dm, 1, resume=(1, 1)), again[1:]):  # a run resumed after one batch hears the rest
        assert a["id"] == b["id"] and torch.equal(a["source"].waveforms, b["source"].waveforms)
    for a, b in zip(dm.val_dataloader(), plain.val_dataloader()):  # evaluation hears the clips as they are
        assert torch.equal(a["source"].waveforms, b["source"].waveforms)
    noisy = _data(tmp_path, unknown_chars="skip", eval_augment=WaveAugment(speeds=[1.0], noise_prob=1.0))
    with pytest.warns(UserWarning):
        noisy.setup("fit")
    first, second = list(noisy.test_dataloader()), list(noisy.test_dataloader())
    for a, b, c in zip(first, second, plain.test_dataloader()):  # evaluation under noise: the same each time
        assert torch.equal(a["source"].waveforms, b["source"].waveforms)
        assert not torch.equal(a["source"].waveforms, c["source"].waveforms)


def test_augmentation_config_parses_and_checks_its_rate(tmp_path: Path) -> None:
    from jsonargparse import ArgumentParser

    from mmformer.data.common.wave_augment import WaveAugment

    parser = ArgumentParser()
    parser.add_class_arguments(SpeechRecognitionData, "data")
    cfg = parser.parse_args(["--data.augment", '{"speeds": [0.9, 1.1], "noise_prob": 0.5}'])
    aug = parser.instantiate(cfg).data.augment
    assert isinstance(aug, WaveAugment) and aug.speeds == (0.9, 1.1) and aug.noise_prob == 0.5
    with pytest.raises(ValueError, match="augment.sample_rate 8000 differs from sample_rate 16000"):
        _data(tmp_path, augment=WaveAugment(sample_rate=8000))

"""Audio files that would train on something other than their audio are errors naming the file (and the
manifest line): truncated WAVs above all, which scipy reads with only a ``WavFileWarning``."""

from __future__ import annotations

import io
import json
import time
import warnings
from pathlib import Path

import numpy as np
import pytest
import soundfile
import torch
import torchaudio.functional as AF

from mmformer.data.readers.audio import AudioFileError, load_audio, read_manifest, to_rate, write_wav
from mmformer.data.readers.manifest import ManifestError, parse_fields, read_column, read_table


def _half_wav(folder: Path) -> Path:
    """A 1 s 16 kHz 16-bit WAV cut after half its samples, its header intact (it still declares 1 s)."""
    write_wav(folder / "full.wav", 0.5 * np.sin(np.arange(16000) / 5.0), 16000)
    data = (folder / "full.wav").read_bytes()
    (folder / "half.wav").write_bytes(data[:44 + 16000])  # 44-byte header + 8000 of 16000 samples
    return folder / "half.wav"


def test_a_wav_truncated_with_its_header_intact_is_an_error_naming_it(tmp_path: Path) -> None:
    path = _half_wav(tmp_path)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no WavFileWarning either: the error is the whole story
        with pytest.raises(AudioFileError, match=rf"{path} is truncated: .*declares 32000 bytes .* holds 16000 \(50%"):
            load_audio(path)
        with pytest.raises(AudioFileError, match="is truncated"):  # the same from shards' in-memory files
            load_audio(_Blob(path.read_bytes(), "shard://half.wav"))
    assert load_audio(tmp_path / "full.wav").shape == (16000,)


class _Blob:
    def __init__(self, data: bytes, name: str) -> None:
        self.data, self.name = data, name

    def read_bytes(self) -> bytes:
        return self.data

    def __str__(self) -> str:
        return self.name


def test_a_truncated_wav_in_a_nemo_manifest_is_an_error_naming_its_line(tmp_path: Path) -> None:
    _half_wav(tmp_path)
    rows = [{"audio_filepath": "full.wav", "duration": 1.0, "text": "a"},
            {"audio_filepath": "half.wav", "duration": 1.0, "text": "b"}]
    (tmp_path / "m.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    with pytest.raises(AudioFileError, match=r"m\.jsonl:2: .*half\.wav is truncated"):
        read_manifest(tmp_path / "m.jsonl")


def test_a_truncated_wav_in_a_manifest_is_an_error_naming_line_and_field(tmp_path: Path) -> None:
    _half_wav(tmp_path)
    (tmp_path / "m.csv").write_text("clip,word\nfull.wav,yes\nhalf.wav,no\n")
    spec = parse_fields({"clip": {"type": "audio"}})["clip"]
    with pytest.raises(ManifestError, match=r"m\.csv:3, field 'clip': .*half\.wav is truncated"):
        read_column(read_table(tmp_path / "m.csv"), spec)


def test_an_empty_wav_is_zero_seconds_whatever_a_nemo_manifest_says(tmp_path: Path) -> None:
    write_wav(tmp_path / "empty.wav", np.zeros(0), 16000)
    (tmp_path / "m.jsonl").write_text(json.dumps({"audio_filepath": "empty.wav", "duration": 2.0, "text": "a"}) + "\n")
    assert read_manifest(tmp_path / "m.jsonl")[0].duration == 0.0  # so min_duration keeps it out of training
    assert load_audio(tmp_path / "empty.wav").shape == (0,)


@pytest.mark.parametrize("samples, message", [
    (np.array([0.1, np.nan, 0.2], np.float32), "NaN or infinite"),
    (np.array([0.1, 3e4, -2e4], np.float32), "peak at 3e\\+04.* int-scaled"),
])
def test_float_wavs_that_are_not_audio_are_refused(tmp_path: Path, samples: np.ndarray, message: str) -> None:
    from scipy.io import wavfile

    wavfile.write(tmp_path / "f.wav", 16000, samples)
    with pytest.raises(AudioFileError, match=rf"f\.wav.*{message}"):
        load_audio(tmp_path / "f.wav")


def test_an_impossible_sample_rate_is_refused_before_resampling(tmp_path: Path) -> None:
    data = bytearray(_wav_bytes(np.zeros(100), 16000))
    data[24:28] = (7).to_bytes(4, "little")  # the fmt chunk's rate: 7 Hz would resample 100 samples to 228k
    (tmp_path / "r.wav").write_bytes(bytes(data))
    with pytest.raises(AudioFileError, match=r"r\.wav: sample rate 7 Hz .*outside \[1000, 1000000\]"):
        load_audio(tmp_path / "r.wav")


def _wav_bytes(wave: np.ndarray, rate: int) -> bytes:
    buf = io.BytesIO()
    soundfile.write(buf, wave, rate, format="WAV", subtype="PCM_16")
    return buf.getvalue()


def test_a_flac_that_ends_early_is_an_error_naming_it(tmp_path: Path) -> None:
    buf = io.BytesIO()
    soundfile.write(buf, 0.5 * np.sin(np.arange(16000) / 5.0), 16000, format="FLAC")
    (tmp_path / "t.flac").write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])
    with pytest.raises(AudioFileError, match=r"t\.flac"):
        load_audio(tmp_path / "t.flac")


def test_common_rates_resample_as_torchaudio_does_and_odd_ones_with_a_small_kernel() -> None:
    wave = torch.randn(4410, generator=torch.Generator().manual_seed(0))
    assert torch.equal(to_rate(wave, 44100, 16000), AF.resample(wave, 44100, 16000))  # 160/441: exact
    start = time.perf_counter()
    odd = to_rate(wave, 22254, 16000)  # gcd 2: torchaudio would build an 8000 x 11000+ kernel
    assert time.perf_counter() - start < 2.0
    assert abs(len(odd) - 4410 * 16000 / 22254) <= 1


def test_a_clip_that_fails_to_decode_mid_epoch_names_its_manifest_line(tmp_path: Path) -> None:
    from mmformer.data.modules.speech import SpeechDataset

    write_wav(tmp_path / "ok.wav", np.zeros(160), 16000)
    (tmp_path / "bad.flac").write_bytes(b"fLaC" + bytes(100))  # listed fine, undecodable when a batch needs it
    ds = SpeechDataset(["m.jsonl:1", "m.jsonl:2"], ["a", "b"], None, torch.ones(2), 16000,
                       files=[str(tmp_path / "ok.wav"), str(tmp_path / "bad.flac")])
    with pytest.raises(AudioFileError, match=r"m\.jsonl:2: cannot decode audio file .*bad\.flac"):
        ds[[0, 1]]

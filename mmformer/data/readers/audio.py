"""Reading audio for speech recognition: files → mono float waveforms at one sample rate, and
NeMo-style JSONL manifests (``{"audio_filepath", "duration", "text"}`` per line).

WAV (integer or float PCM, any channel count, any rate) is read with ``scipy.io.wavfile``; other
formats (FLAC, MP3, ...) go through ``torchaudio.load``, which needs the ``torchcodec`` package
(or ``soundfile``, used when present). Every clip is mixed down to mono by averaging its channels
and resampled with ``torchaudio.functional.resample``.
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torchaudio.functional as AF
from torch import Tensor

from mmformer.data.readers.blob import Blob, open_source


class AudioFileError(ValueError):
    """An audio file is missing or unreadable; the message names it (and its manifest line)."""


def _read_wav(path: Path | io.BytesIO) -> tuple[np.ndarray, int]:
    from scipy.io import wavfile

    rate, data = wavfile.read(path)
    data = np.asarray(data)
    if data.dtype == np.uint8:  # 8-bit WAV is unsigned
        data = (data.astype(np.float32) - 128.0) / 128.0
    elif np.issubdtype(data.dtype, np.integer):
        data = data.astype(np.float32) / float(-np.iinfo(data.dtype).min)
    return data.astype(np.float32, copy=False), int(rate)


def _read_other(path: Path | io.BytesIO) -> tuple[np.ndarray, int]:
    try:
        import soundfile

        data, rate = soundfile.read(path if isinstance(path, io.BytesIO) else str(path), dtype="float32",
                                    always_2d=False)
        return np.asarray(data), int(rate)
    except ImportError:
        pass
    try:
        import torchaudio

        wave, rate = torchaudio.load(path if isinstance(path, io.BytesIO) else str(path))  # (C, L)
    except ImportError as err:
        raise AudioFileError(f"cannot read {path}: non-WAV audio needs `pip install torchcodec` (or soundfile); "
                             f"or convert it to WAV") from err
    return wave.T.numpy(), int(rate)


def load_audio(path: str | Path | Blob, sample_rate: int = 16000) -> Tensor:
    """An audio file (a path, or a :class:`Blob` such as a file inside shards) → mono ``(L,)`` float32
    waveform at ``sample_rate``.

    Multi-channel audio is averaged to mono; any other rate is resampled.

    Raises:
        AudioFileError: the file is missing or cannot be decoded.
    """
    try:
        source, path = open_source(path, "audio")
    except FileNotFoundError as err:
        raise AudioFileError(str(err)) from None
    # WAV by its suffix, or a blob by its RIFF header: the same decoder either way
    wav = source.getvalue()[:4] == b"RIFF" if isinstance(source, io.BytesIO) else source.suffix.lower() == ".wav"
    try:
        data, rate = _read_wav(source) if wav else _read_other(source)
    except AudioFileError:
        raise
    except Exception as err:  # a decoder's own message, with the file named
        raise AudioFileError(f"cannot decode audio file {path}: {err}") from err
    wave = torch.from_numpy(np.ascontiguousarray(data))
    if wave.dim() == 2:  # (L, C) → mono
        wave = wave.mean(dim=1)
    if wave.dim() != 1:
        raise AudioFileError(f"{path} decoded to shape {tuple(wave.shape)}, expected (samples,) or (samples, channels)")
    return to_rate(wave, rate, sample_rate)


def to_rate(wave: Tensor, rate: int, sample_rate: int) -> Tensor:
    """Resamples ``(L,)`` from ``rate`` to ``sample_rate`` (a no-op when they match)."""
    if rate == sample_rate or wave.numel() == 0:
        return wave.float()
    return AF.resample(wave.float(), rate, sample_rate)


@dataclass
class ManifestEntry:
    """One line of a NeMo-style manifest."""

    audio_filepath: str  # resolved against the manifest's folder when relative
    duration: float  # seconds (as written in the manifest; used for filtering and bucketing)
    text: str  # the transcript ("" when the manifest has none, e.g. for prediction)
    line: int  # 1-based line number, for error messages
    manifest: str  # the manifest's path


def read_manifest(path: str | Path, require_text: bool = True) -> list[ManifestEntry]:
    """Reads a JSONL manifest: one ``{"audio_filepath", "duration", "text"}`` object per line.

    Relative ``audio_filepath`` values are resolved against the manifest's folder. ``duration``
    is read from the file header when absent.

    Raises:
        FileNotFoundError: the manifest does not exist.
        ValueError: a line is not JSON or lacks a key; the message names the line.
        AudioFileError: a listed audio file does not exist (named with its manifest line).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"manifest {path} does not exist")
    entries = []
    with open(path, encoding="utf-8") as f:
        for n, raw in enumerate(f, start=1):
            if not raw.strip():
                continue
            try:
                obj = json.loads(raw)
            except json.JSONDecodeError as err:
                raise ValueError(f"{path}:{n}: not a JSON object ({err})") from err
            need = ["audio_filepath"] + (["text"] if require_text else [])
            missing = [k for k in need if k not in obj]
            if missing:
                raise ValueError(f"{path}:{n}: missing key(s) {missing}; NeMo manifests have "
                                 f'{{"audio_filepath", "duration", "text"}}')
            audio = Path(obj["audio_filepath"])
            audio = audio if audio.is_absolute() else path.parent / audio
            if not audio.is_file():
                raise AudioFileError(f"{path}:{n}: audio file {audio} does not exist")
            duration = obj.get("duration")
            if duration is None:
                duration = _probe_duration(audio)
            entries.append(ManifestEntry(str(audio), float(duration), str(obj.get("text", "")), n, str(path)))
    return entries


def _probe_duration(path: Path) -> float:
    if path.suffix.lower() == ".wav":
        import wave

        try:
            with wave.open(str(path)) as w:
                return w.getnframes() / w.getframerate()
        except (wave.Error, EOFError):
            pass  # float WAV and friends: decode it
    return load_audio(path, 16000).numel() / 16000


def write_wav(path: str | Path, wave: Tensor | np.ndarray, sample_rate: int) -> None:
    """Writes ``(L,)`` or ``(L, C)`` float samples in [-1, 1] as 16-bit PCM WAV."""
    from scipy.io import wavfile

    data = np.asarray(wave, dtype=np.float32)
    wavfile.write(path, sample_rate, (np.clip(data, -1, 1) * 32767).round().astype(np.int16))

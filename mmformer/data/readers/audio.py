"""Reading audio for speech recognition: files → mono float waveforms at one sample rate, and
NeMo-style JSONL manifests (``{"audio_filepath", "duration", "text"}`` per line).

WAV (integer or float PCM, any channel count, any rate) is read with ``scipy.io.wavfile`` after a
header check (:mod:`mmformer.data.readers.wav`); other formats (FLAC, OGG, MP3, ...) with ``soundfile``
(or ``torchaudio.load``, which needs the ``torchcodec`` package, when soundfile is missing). Every clip
is mixed down to mono by averaging its channels and resampled with ``torchaudio.functional.resample``.

A file that would train on something other than its audio is an :class:`AudioFileError` naming it (and
its manifest line when read through a manifest): truncated (a WAV data chunk or a FLAC stream shorter
than its header declares), NaN/inf or absurd float samples, an implausible sample rate.
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np
import torch
import torchaudio.functional as AF
from torch import Tensor

from mmformer.data.readers.blob import Blob, open_source
from mmformer.data.readers.text import encodable, is_file, json_objects, jsonl_lines
from mmformer.data.readers.wav import MAX_RATE, MIN_RATE, AudioFileError, check_wav, read_wav

__all__ = ["AudioFileError", "ManifestEntry", "load_audio", "read_manifest", "to_rate", "write_wav"]


def _read_other(source: Path | io.BytesIO, name: str) -> tuple[np.ndarray, int]:
    """FLAC, OGG, MP3... → ``((frames, channels) float32, rate)``, decoded block by block (so a corrupt header's
    frame count allocates nothing). A FLAC that decodes to fewer frames than its STREAMINFO declares (an exact
    count; other formats' counts are estimates) is a truncated file."""
    try:
        import soundfile
    except ImportError:
        soundfile = None
    if soundfile is None:
        try:
            import torchaudio

            wave, rate = torchaudio.load(source if isinstance(source, io.BytesIO) else str(source))  # (C, L)
        except ImportError as err:
            raise AudioFileError(f"cannot read {name}: non-WAV audio needs `pip install soundfile` (or torchcodec); "
                                 f"or convert it to WAV") from err
        return wave.T.numpy(), int(rate)
    blocks = []
    with soundfile.SoundFile(source if isinstance(source, io.BytesIO) else str(source)) as f:
        declared, rate, exact = f.frames, f.samplerate, f.format == "FLAC"
        while len(block := f.read(1 << 16, dtype="float32", always_2d=True)):
            blocks.append(block)
    data = np.concatenate(blocks) if blocks else np.zeros((0, 1), np.float32)
    if exact and len(data) < declared < 1 << 62:  # libsndfile's "unknown length" is a huge count
        raise AudioFileError(f"{name} is truncated: its header declares {declared} frames but only {len(data)} "
                             f"decode ({len(data) / declared:.0%} of the clip); replace it with a complete copy")
    return data, int(rate)


def load_audio(path: str | Path | Blob, sample_rate: int = 16000) -> Tensor:
    """An audio file (a path, or a :class:`Blob` such as a file inside shards) → mono ``(L,)`` float32
    waveform at ``sample_rate``.

    Multi-channel audio is averaged to mono; any other rate is resampled. A file that declares no samples
    gives ``(0,)`` (the speech DataModule keeps such clips out of training by ``min_duration``, the manifest
    reader refuses them).

    Raises:
        AudioFileError: the file is missing, cannot be decoded, is truncated (a WAV whose data chunk is
            cut short, a FLAC that ends before its declared length), holds non-finite or absurd float
            samples, or declares a sample rate outside [1 kHz, 1 MHz].
    """
    try:
        source, name = open_source(path, "audio")
    except FileNotFoundError as err:
        raise AudioFileError(str(err)) from None
    try:
        if isinstance(source, Path):  # one read: decoders then work on memory
            source = io.BytesIO(source.read_bytes())
        head = source.read(4)
        source.seek(0)
        wav = head in (b"RIFF", b"RIFX", b"RF64") or (isinstance(path, (str, Path)) and name.lower().endswith(".wav"))
        data, rate = read_wav(source, name) if wav else _read_other(source, name)
    except AudioFileError:
        raise
    except Exception as err:  # a decoder's own message, with the file named
        raise AudioFileError(f"cannot decode audio file {name}: {err}") from err
    if data.ndim not in (1, 2) or (data.ndim == 2 and data.shape[1] == 0):
        raise AudioFileError(f"{name} decoded to shape {data.shape}, expected (samples,) or (samples, channels)")
    if not MIN_RATE <= rate <= MAX_RATE:
        raise AudioFileError(f"{name}: sample rate {rate} Hz is outside [{MIN_RATE}, {MAX_RATE}]; the header is "
                             f"corrupt")
    if not np.isfinite(data).all():
        raise AudioFileError(f"{name} decodes to NaN or infinite samples; the file is corrupt")
    wave = torch.from_numpy(np.ascontiguousarray(data))
    if wave.dim() == 2:  # (L, C) → mono
        wave = wave.mean(dim=1)
    return to_rate(wave, rate, sample_rate)


# Resampling kernels are (new/g, orig/g + 2 width) for g = gcd(orig, new): 44.1 → 16 kHz is (160, 441 + 18), but a
# rate such as 22254 Hz (gcd 2) would build an 8000 x 11145 kernel (356 MB, seconds per clip). Such ratios are
# approximated by the nearest fraction whose terms stay under this (a relative rate error under 1e-4 even at
# 16x upsampling, 0.002 semitones).
_MAX_RATIO_TERM = 1000


def to_rate(wave: Tensor, rate: int, sample_rate: int) -> Tensor:
    """Resamples ``(L,)`` from ``rate`` to ``sample_rate`` (a no-op when they match)."""
    if rate == sample_rate or wave.numel() == 0:
        return wave.float()
    ratio = Fraction(sample_rate, rate)
    if max(ratio.numerator, ratio.denominator) > _MAX_RATIO_TERM:
        ratio = ratio.limit_denominator(max(1, int(_MAX_RATIO_TERM / max(ratio, 1))))
        return AF.resample(wave.float(), ratio.denominator, ratio.numerator)
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
    is read from the file header when absent. A WAV file's header is checked here (see :func:`check_wav`),
    so a truncated clip fails before training, named with its line.

    Raises:
        FileNotFoundError: the manifest does not exist.
        ValueError: a line is not a JSON object, lacks a key or holds a value of the wrong type (a
            non-string path or text, a duration that is not a number >= 0); the message names the line.
        AudioFileError: a listed audio file does not exist or its WAV header is broken (named with its line).
    """
    path = Path(path)
    if not is_file(path):
        raise FileNotFoundError(f"manifest {path} does not exist")
    entries = []
    hint = 'NeMo manifests have one {"audio_filepath", "duration", "text"} object a line'
    for n, obj in json_objects(jsonl_lines(path), path, ValueError, hint):
        need = ["audio_filepath"] + (["text"] if require_text else [])
        missing = [k for k in need if k not in obj]
        if missing:
            raise ValueError(f"{path}:{n}: missing key(s) {missing}; NeMo manifests have "
                             f'{{"audio_filepath", "duration", "text"}}')
        entries.append(_entry(path, n, obj))
    return entries


def _entry(path: Path, n: int, obj: dict) -> ManifestEntry:
    """One manifest line's object → its entry, every value checked."""
    file, text, duration = obj["audio_filepath"], obj.get("text", ""), obj.get("duration")
    if not isinstance(file, str) or not file.strip():
        raise ValueError(f"{path}:{n}: audio_filepath must be a path (a non-empty string), got {file!r:.80}")
    if not isinstance(text, str) or not encodable(text):
        raise ValueError(f"{path}:{n}: text must be a string of characters, got {text!r:.80}")
    audio = Path(file.strip())
    audio = audio if audio.is_absolute() else path.parent / audio
    if not is_file(audio):
        raise AudioFileError(f"{path}:{n}: audio file {audio} does not exist")
    try:
        header = check_wav(audio) if audio.suffix.lower() == ".wav" else None
    except OSError as err:
        raise AudioFileError(f"{path}:{n}: cannot read audio file {audio} ({err})") from None
    except AudioFileError as err:
        raise AudioFileError(f"{path}:{n}: {err}") from None
    if duration is None:
        try:
            duration = header.seconds if header is not None else _probe_duration(audio)
        except AudioFileError as err:
            raise AudioFileError(f"{path}:{n}: {err}") from None
    elif isinstance(duration, bool) or not isinstance(duration, (int, float)) or not 0 <= duration < math.inf:
        raise ValueError(f"{path}:{n}: duration must be a number of seconds (>= 0), got {duration!r:.40}; fix it or "
                         f"leave the key out (it is then read from the file)")
    elif header is not None and header.frames == 0:
        duration = 0.0  # an empty WAV is 0 s whatever the line says, so min_duration keeps it out of training
    return ManifestEntry(str(audio), float(duration), text, n, str(path))


def _probe_duration(path: Path) -> float:
    """Seconds of a non-WAV clip (WAV durations come from :func:`check_wav`'s header walk): decoded."""
    return load_audio(path, 16000).numel() / 16000


def write_wav(path: str | Path, wave: Tensor | np.ndarray, sample_rate: int) -> None:
    """Writes ``(L,)`` or ``(L, C)`` float samples in [-1, 1] as 16-bit PCM WAV."""
    from scipy.io import wavfile

    data = np.asarray(wave, dtype=np.float32)
    wavfile.write(path, sample_rate, (np.clip(data, -1, 1) * 32767).round().astype(np.int16))

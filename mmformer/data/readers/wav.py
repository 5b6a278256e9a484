"""WAV files, checked before and after decoding: a header walk that refuses truncated or impossible files
(``check_wav``), and ``read_wav``, scipy's decoder with those checks and samples scaled to float.

scipy reads a WAV whose data chunk is cut short (a copy that stopped half-way, a full disk) with only a
``WavFileWarning`` and returns the samples that are there: a clip would train on half its audio against
the whole transcript. Here that is an :class:`AudioFileError` naming the file.
"""

from __future__ import annotations

import io
import struct
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np

# Plausible sample rates (Hz): outside them a header is corrupt, and resampling from it would allocate without bound.
MIN_RATE, MAX_RATE = 1000, 1_000_000
# Float samples are nominally in [-1, 1]; peaks past this mean int-scaled or corrupt samples, not audio.
MAX_FLOAT_PEAK = 100.0


class AudioFileError(ValueError):
    """An audio file is missing or unreadable; the message names it (and its manifest line)."""


@dataclass(frozen=True)
class WavHeader:
    """What a WAV header declares."""

    rate: int  # samples per second
    channels: int
    frames: int  # sample frames in the data chunk (one sample per channel each)

    @property
    def seconds(self) -> float:
        return self.frames / self.rate


def check_wav(file: Path | BinaryIO, name: str | None = None) -> WavHeader | None:
    """Walks a WAV file's chunks up to its data chunk, reading only headers (cheap: used on every manifest row).
    None for an RF64 file (its 64-bit sizes live in a ds64 chunk: scipy checks those).

    Raises:
        AudioFileError: not a RIFF/WAVE file, no ``fmt`` chunk before the data, an impossible format (no
            channels, a rate outside [1 kHz, 1 MHz], a block size that does not fit the sample width), or a
            data chunk that declares more bytes than the file holds (truncated). RF64 files pass unchecked.
    """
    name = name or str(file)
    if isinstance(file, Path):
        with open(file, "rb") as f:
            return check_wav(f, name)
    size = file.seek(0, io.SEEK_END)
    file.seek(0)
    head = file.read(12)
    if head[:4] == b"RF64":
        return None
    if len(head) < 12 or head[:4] not in (b"RIFF", b"RIFX") or head[8:12] != b"WAVE":
        raise AudioFileError(f"{name} is not readable audio (no RIFF/WAVE header); convert it to WAV or FLAC")
    endian = "<" if head[:4] == b"RIFF" else ">"
    fmt = None
    pos = 12
    while True:
        file.seek(pos)
        chunk = file.read(8)
        if len(chunk) < 8:
            raise AudioFileError(f"{name}: the WAV file ends before its data chunk (truncated at {size} bytes); "
                                 f"replace it with a complete copy")
        kind, length = chunk[:4], struct.unpack(endian + "I", chunk[4:])[0]
        if kind == b"fmt ":
            body = file.read(16)
            if length < 16 or len(body) < 16:
                raise AudioFileError(f"{name}: the WAV fmt chunk is truncated ({len(body)} of 16 bytes)")
            _, channels, rate, _, block_align, bits = struct.unpack(endian + "HHIIHH", body)
            fmt = (channels, rate, block_align, bits)
        elif kind == b"data":
            if fmt is None:
                raise AudioFileError(f"{name}: the WAV file has no fmt chunk before its samples")
            channels, rate, block_align, bits = fmt
            if channels == 0 or bits == 0 or block_align != channels * ((bits + 7) // 8):
                raise AudioFileError(f"{name}: impossible WAV format ({channels} channels of {bits} bits in "
                                     f"{block_align}-byte frames); the header is corrupt")
            if not MIN_RATE <= rate <= MAX_RATE:
                raise AudioFileError(f"{name}: sample rate {rate} Hz in the WAV header is outside "
                                     f"[{MIN_RATE}, {MAX_RATE}]; the header is corrupt")
            have = size - pos - 8
            if length > have:
                raise AudioFileError(f"{name} is truncated: its header declares {length} bytes of samples but the "
                                     f"file holds {have} ({have / length:.0%} of the clip); replace it with a "
                                     f"complete copy or drop it")
            return WavHeader(rate, channels, length // block_align)
        pos += 8 + length + (length & 1)  # chunks are padded to an even size


def read_wav(source: Path | io.BytesIO, name: str) -> tuple[np.ndarray, int]:
    """A WAV file → ``((frames,) or (frames, channels) float32 samples, rate)``, integers scaled to [-1, 1).

    Raises:
        AudioFileError: :func:`check_wav`'s checks, or float samples that are not finite or peak past
            :data:`MAX_FLOAT_PEAK`.
        ValueError: scipy's own (an unsupported encoding...): the caller names the file.
    """
    from scipy.io import wavfile

    check_wav(source, name)
    if isinstance(source, io.BytesIO):
        source.seek(0)
    with warnings.catch_warnings():
        # what is left to warn about after check_wav is harmless: an unknown chunk (skipped), a RIFF size
        # past the end while the data chunk is whole
        warnings.simplefilter("ignore", wavfile.WavFileWarning)
        rate, data = wavfile.read(source)
    data = np.asarray(data)
    if data.dtype == np.uint8:  # 8-bit WAV is unsigned
        data = (data.astype(np.float32) - 128.0) / 128.0
    elif np.issubdtype(data.dtype, np.integer):
        data = data.astype(np.float32) / float(-np.iinfo(data.dtype).min)
    else:
        with np.errstate(over="ignore"):  # float64 past float32's range becomes inf: refused below
            data = data.astype(np.float32, copy=False)
        if not np.isfinite(data).all():
            raise AudioFileError(f"{name} holds NaN or infinite float samples; the file is corrupt")
        peak = float(np.abs(data).max()) if data.size else 0.0
        if peak > MAX_FLOAT_PEAK:
            raise AudioFileError(f"{name}: float samples peak at {peak:.3g}, but float WAV holds [-1, 1]; the file "
                                 f"is corrupt or int-scaled (divide by 32768)")
    return data, int(rate)

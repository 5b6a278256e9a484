"""What the embedded speech corpora's synthesizers share: the sample rate, a process pool, the split format.

A split is ``<split>.npy`` (every clip, 16 kHz int16, back to back) plus ``<split>.jsonl`` (one row per clip:
id, offset, num_samples, duration, text and how it was spoken), so a corpus of 20k clips loads as one
memory map instead of 20k files.
"""

from __future__ import annotations

import json
import sys
import wave
from multiprocessing import get_context
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

SAMPLE_RATE = 16000


def _init_worker() -> None:
    import torch

    torch.set_num_threads(1)


def map_in_pool(fn: Callable[[Any], Any], jobs: Sequence[Any], workers: int, desc: str) -> list[Any]:
    """``[fn(job) for job in jobs]`` in ``workers`` single-threaded processes, in order, with a progress bar."""
    from tqdm import tqdm

    ctx = get_context("fork" if sys.platform != "win32" else "spawn")
    with ctx.Pool(max(1, workers), initializer=_init_worker) as pool:
        return list(tqdm(pool.imap(fn, jobs, chunksize=32), total=len(jobs), desc=desc, file=sys.stderr,
                         mininterval=2.0))


def write_split(folder: Path, split: str, rows: Sequence[dict[str, Any]], waves: Sequence[np.ndarray]) -> None:
    """``<folder>/<split>.npy`` (every 16 kHz int16 clip back to back) and ``<split>.jsonl`` (per clip: id,
    offset, num_samples, duration, then ``rows``' fields: the text and how it was spoken)."""
    lengths = np.array([len(w) for w in waves], dtype=np.int64)
    offsets = np.concatenate([[0], np.cumsum(lengths)[:-1]])
    tmp = folder / f"{split}.tmp.npy"
    np.save(tmp, np.concatenate(waves) if len(waves) else np.zeros(0, np.int16))
    tmp.replace(folder / f"{split}.npy")
    with open(folder / f"{split}.jsonl", "w") as f:
        for i, (row, off, num) in enumerate(zip(rows, offsets.tolist(), lengths.tolist())):
            f.write(json.dumps({"id": f"{split}-{i:06d}", "offset": off, "num_samples": num,
                                "duration": round(num / SAMPLE_RATE, 4), **row}) + "\n")


def read_wav_int16(path: str | Path) -> tuple[np.ndarray, int]:
    """A mono 16-bit PCM WAV file → ``(samples (L,) int16, sample rate)``."""
    with wave.open(str(path)) as w:
        if w.getsampwidth() != 2 or w.getnchannels() != 1:
            raise ValueError(f"{path}: expected mono 16-bit PCM, got {w.getnchannels()} channel(s) of "
                             f"{8 * w.getsampwidth()} bits")
        return np.frombuffer(w.readframes(w.getnframes()), dtype="<i2"), w.getframerate()


def to_sample_rate(pcm: np.ndarray, rate: int) -> np.ndarray:
    """int16 samples ``(L,)`` at ``rate`` → int16 samples at :data:`SAMPLE_RATE` (torchaudio's resampler)."""
    if rate == SAMPLE_RATE:
        return pcm.copy()
    import torch
    import torchaudio.functional as AF

    wave = AF.resample(torch.from_numpy(pcm.astype(np.float32) / 32768.0), rate, SAMPLE_RATE)
    return (wave.clamp(-1, 1) * 32767).round().to(torch.int16).numpy()

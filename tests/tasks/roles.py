"""A tiny in-memory DataModule of role-keyed batches (the batch contract of issue #13), and toy
modalities to fill it: each task's tests train over a non-default modality without files on disk."""

from __future__ import annotations

import math
from dataclasses import replace
from typing import Any

import pytorch_lightning as pl
import torch
from torch import Tensor
from torch.utils.data import DataLoader

from mmformer.data.spec import DataSpec, ProvidesDataSpec
from mmformer.tokenizers.audio import AudioBatch

SAMPLE_RATE = 8000
Split = dict[str, Any]  # role → all rows of a split: a tensor (N, ...), an AudioBatch or a list of N items


def rows_of(value: Any, idx: Tensor) -> Any:
    """Rows ``idx`` of one role's value (tensor, AudioBatch cut to its longest row, or list)."""
    if isinstance(value, AudioBatch):
        lengths = value.lengths[idx]
        return AudioBatch(value.waveforms[idx, : int(lengths.max())], lengths)
    if isinstance(value, Tensor):
        return value[idx]
    return [value[i] for i in idx.tolist()]


class RoleData(pl.LightningDataModule, ProvidesDataSpec):
    """Batches ``{role: rows, ..., "index": (B,) long}`` cut from whole splits held in memory.

    Args:
        splits: split name (``train``, ``val``, ``test``, ``predict``) → role → all rows.
        spec: what the data declares (``predict_names`` are added from the predict split's size).
        batch_size: rows per batch; training batches are reshuffled each epoch by a seeded generator.
    """

    def __init__(self, splits: dict[str, Split], spec: DataSpec | None = None, batch_size: int = 16) -> None:
        super().__init__()
        self.splits, self.batch_size, self._epoch = splits, batch_size, 0
        n_predict = _size(splits["predict"]) if "predict" in splits else 0
        names = [f"item{i}" for i in range(n_predict)] if n_predict else None
        self.spec = replace(spec or DataSpec(), predict_names=names)

    def data_spec(self) -> DataSpec:
        return self.spec

    def _loader(self, split: str, shuffle: bool = False) -> DataLoader:
        data = self.splits[split]
        n = _size(data)
        if shuffle:
            self._epoch += 1
            order = torch.randperm(n, generator=torch.Generator().manual_seed(self._epoch))
        else:
            order = torch.arange(n)
        batches = [{**{k: rows_of(v, idx) for k, v in data.items()}, "index": idx}
                   for idx in order.split(self.batch_size)]
        return DataLoader(batches, batch_size=None, collate_fn=lambda b: b)

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader("val" if "val" in self.splits else "test")

    def test_dataloader(self) -> DataLoader:
        return self._loader("test")

    def predict_dataloader(self) -> DataLoader:
        return self._loader("predict")


def _size(split: Split) -> int:
    first = next(iter(split.values()))
    return len(first.lengths) if isinstance(first, AudioBatch) else len(first)


def tones(labels: Tensor, seed: int, seconds: float = 0.25) -> AudioBatch:
    """One noisy sine per label, at ``(label + 1) * 400`` Hz, of random lengths (zero-padded): ``AudioBatch``."""
    g = torch.Generator().manual_seed(seed)
    n, length = len(labels), int(seconds * SAMPLE_RATE)
    lengths = torch.randint(length // 2, length + 1, (n,), generator=g)
    t = torch.arange(length) / SAMPLE_RATE
    phase = torch.rand(n, 1, generator=g) * 2 * math.pi
    wave = 0.5 * torch.sin(2 * math.pi * 400 * (labels[:, None] + 1) * t + phase)
    wave = wave + 0.05 * torch.randn(n, length, generator=g)
    return AudioBatch(wave * (torch.arange(length) < lengths[:, None]), lengths)


def audio_tokenizer(dim: int) -> torch.nn.Module:
    """A small spectrogram tokenizer for :func:`tones` (16 mel bins, 4 frames per token, no SpecAugment)."""
    from mmformer.tokenizers.audio import AudioTokenizer

    return AudioTokenizer(dim, sample_rate=SAMPLE_RATE, n_mels=16, n_fft=200, win_length=200, hop_length=80,
                          patching="frames", frames_per_token=4, freq_masks=0, time_masks=0)

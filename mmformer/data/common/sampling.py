"""Exactly resumable data order: shuffles that depend only on (seed, epoch), restartable mid-epoch.

The sampler yields *virtual* indices ``epoch * n + i``: the dataset reads sample ``i`` and seeds
its augmentation with the virtual index, so a sample's augmentation in an epoch is the same
whether the run was interrupted or not (and whatever the global RNG went through meanwhile).
"""

from __future__ import annotations

from typing import Callable, Iterator, Sized, TypeVar

import math

import pytorch_lightning as pl
import torch
from torch.utils.data import DistributedSampler, Sampler

T = TypeVar("T")
R = TypeVar("R")


class ResumableSampler(Sampler[int]):
    """Shuffled (or sequential) virtual indices over ``n`` samples.

    Args:
        n: dataset size.
        seed: shuffling seed; epoch ``e`` uses the permutation of ``seed`` and ``e``.
        shuffle: permute within each epoch.
    """

    def __init__(self, n: int, seed: int = 0, shuffle: bool = True) -> None:
        self.n, self.seed, self.shuffle = n, seed, shuffle
        self.epoch = 0
        self._resume: tuple[int, int] | None = None

    def set_epoch(self, epoch: int) -> None:
        """Called by Lightning at every epoch start."""
        self.epoch = epoch

    def resume_at(self, epoch: int, start: int) -> None:
        """The next iteration over ``epoch`` starts at its ``start``-th sample (a mid-epoch checkpoint)."""
        self._resume = (epoch, start)

    def __iter__(self) -> Iterator[int]:
        if self.shuffle:
            order = torch.randperm(self.n, generator=torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch))
        else:
            order = torch.arange(self.n)
        start = 0
        if self._resume is not None and self._resume[0] == self.epoch:
            start, self._resume = self._resume[1], None
        return iter((order[start:] + self.epoch * self.n).tolist())

    def __len__(self) -> int:
        return self.n


def seeded_call(fn: Callable[[T], R], x: T, seed: int) -> R:
    """``fn(x)`` with torch's CPU generator seeded by ``seed``, then put back as it was.

    Seeds only the CPU default generator: ``torch.manual_seed`` (which also touches CUDA) and
    ``fork_rng`` cost 3-4x more per sample.
    """
    g = torch.default_generator
    state = g.get_state()
    g.manual_seed(seed)
    try:
        return fn(x)
    finally:
        g.set_state(state)


class UnpaddedDistributedSampler(DistributedSampler):
    """Evaluation shards without the padding ``DistributedSampler`` adds to even out ranks.

    Padding repeats samples, so metrics under DDP would count them twice; unpadded shards make
    DDP test accuracy equal single-process accuracy exactly (ranks may get one batch fewer).
    """

    def __init__(self, dataset: Sized, num_replicas: int, rank: int) -> None:
        super().__init__(dataset, num_replicas=num_replicas, rank=rank, shuffle=False)  # type: ignore[arg-type]
        self.num_samples = len(range(rank, len(dataset), num_replicas))

    def __iter__(self) -> Iterator[int]:
        return iter(range(self.rank, len(self.dataset), self.num_replicas))  # type: ignore[arg-type]

    def __len__(self) -> int:
        return self.num_samples


class ResumableDataModule(pl.LightningDataModule):
    """A DataModule whose training loader can restart mid-epoch: checkpoints record where in the
    epoch training stood, and a resumed run continues there (subclasses pass ``self._resume`` to
    their sampler's ``resume_at``). The position is counted in samples (``batch_size`` a step, for
    :class:`ResumableSampler`) or, with ``_resume_unit = "batches"``, in batches (for batch samplers
    whose batches vary in size)."""

    batch_size: int
    _resume: tuple[int, int] | None = None
    _resume_unit: str = "samples"  # "samples" or "batches"

    def state_dict(self) -> dict[str, int]:
        t = self.trainer
        if t is None or not math.isfinite(t.num_training_batches):  # not fitting: nothing to resume
            return {}
        done = max(0, t.global_step * t.accumulate_grad_batches - t.current_epoch * int(t.num_training_batches))
        if self._resume_unit == "batches":
            return {"epoch": t.current_epoch, "batches_done": done}
        return {"epoch": t.current_epoch, "samples_done": done * self.batch_size}

    def load_state_dict(self, state: dict[str, int]) -> None:
        if state:
            self._resume = (state["epoch"], state[f"{self._resume_unit}_done"])

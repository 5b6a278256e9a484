"""Exactly resumable data order: shuffles that depend only on (seed, epoch), restartable mid-epoch.

The sampler yields *virtual* indices ``epoch * n + i``: the dataset reads sample ``i`` and seeds
its augmentation with the virtual index, so a sample's augmentation in an epoch is the same
whether the run was interrupted or not (and whatever the global RNG went through meanwhile).
"""

from __future__ import annotations

import math
from typing import Any, Callable, Iterator, Sized, TypeVar

import pytorch_lightning as pl
import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, DistributedSampler, Sampler

from mmformer.data.common.epochs import EpochSampler

T = TypeVar("T")
R = TypeVar("R")


def chunk_window_order(chunks: Tensor, window: int, generator: torch.Generator) -> Tensor:
    """A shuffle that reads few chunks at a time: ``(n,)`` positions whose chunk ids are ``chunks``.

    The chunks are permuted, cut into groups of ``window`` consecutive chunks, and the positions of
    each group are permuted together (litdata and WebDataset shuffle the same way). A reader then
    needs about ``window`` chunks at once instead of all of them, which is what object storage wants.
    """
    ids, inverse = torch.unique(chunks, return_inverse=True)
    rank_of = torch.empty_like(ids)
    rank_of[torch.randperm(len(ids), generator=generator)] = torch.arange(len(ids))
    group = rank_of[inverse] // max(1, window)  # (n,) which window each position falls in
    noise = torch.rand(len(chunks), generator=generator)
    # sort by (group, noise): groups in order, a random order inside each
    return torch.argsort(group.double() + noise.double() * 0.5, stable=True)


class ResumableSampler(EpochSampler):
    """Shuffled (or sequential) virtual indices over ``n`` samples, sharded by DDP rank, resumable mid-epoch.

    An :class:`EpochSampler` (a ``DistributedSampler`` only so Lightning does not wrap it under DDP): it shards
    itself, so a mid-epoch resume skips what *this rank* already trained on (Lightning's wrapper would skip
    from the global order and hand ranks the wrong samples). Rank ``r`` of ``W`` takes positions
    ``r::W`` of the epoch's order padded by wrapping to a multiple of ``W`` — exactly what Lightning's
    ``DistributedSamplerWrapper`` gave before — or, with ``chunks``, a contiguous block of the order
    (so each rank reads its own chunks). With ``W = 1`` and no ``chunks`` the order is the plain
    seeded permutation.

    Args:
        n: dataset size.
        seed: shuffling seed; epoch ``e`` uses the permutation of ``seed`` and ``e``.
        shuffle: permute within each epoch.
        num_replicas, rank: the DDP world size and this process's rank.
        chunks: ``(n,)`` shard chunk id of each sample, to shuffle chunk-aware (:func:`chunk_window_order`).
        window: chunks mixed together by that shuffle.
    """

    def __init__(self, n: int, seed: int = 0, shuffle: bool = True, num_replicas: int = 1, rank: int = 0,
                 chunks: Tensor | None = None, window: int = 8) -> None:
        super().__init__(range(n), num_replicas=num_replicas, rank=rank, shuffle=shuffle, seed=seed)  # type: ignore[arg-type]
        if chunks is not None and len(chunks) != n:
            raise ValueError(f"chunks has {len(chunks)} entries for {n} samples")
        self.n, self.chunks, self.window = n, chunks, window
        self.per_rank = math.ceil(n / num_replicas)

    def order(self, epoch: int) -> Tensor:
        """``(n,)`` the whole epoch's order (every rank's), before sharding."""
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
        if not self.shuffle:
            return torch.arange(self.n)
        if self.chunks is not None:
            return chunk_window_order(self.chunks, self.window, g)
        return torch.randperm(self.n, generator=g)

    def __iter__(self) -> Iterator[int]:
        # A generator: the epoch is read at the first index, not when iter() is called.
        order = self.order(self.epoch)
        if self.num_replicas > 1:
            padded = torch.cat([order, order[: self.per_rank * self.num_replicas - self.n]])
            if self.chunks is not None:  # a contiguous block: this rank's own chunks
                order = padded[self.rank * self.per_rank:(self.rank + 1) * self.per_rank]
            else:
                order = padded[self.rank::self.num_replicas]
        yield from (order[self._start():] + self.epoch * self.n).tolist()

    def __len__(self) -> int:
        return self.per_rank


def seeded_call(fn: Callable[[T], R], x: T, seed: int) -> R:
    """``fn(x)`` with torch's CPU generator seeded by ``seed``, then put back as it was.

    Seeds only the CPU default generator, the one the sample's draws use: ``torch.manual_seed`` (which also
    seeds CUDA) and ``fork_rng`` (which saves and restores every device's) do more work per sample.
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


def world_of(trainer: Any) -> tuple[int, int]:
    """``(world_size, global_rank)`` of a Lightning trainer; ``(1, 0)`` without one."""
    return (trainer.world_size, trainer.global_rank) if trainer is not None else (1, 0)


class ResumableDataModule(pl.LightningDataModule):
    """A DataModule whose training loader can restart mid-epoch: checkpoints record where in the
    epoch training stood, and a resumed run continues there (subclasses build their training loader with
    :meth:`_shuffled_loader` or hand a new training sampler to :meth:`_resume_sampler`). The position is
    counted in samples (``batch_size`` a batch, for :class:`ResumableSampler`) or, with
    ``_resume_unit = "batches"``, in batches (for batch samplers whose batches vary in size)."""

    batch_size: int
    seed: int
    num_workers: int
    _resume: tuple[int, int] | None = None
    _resume_unit: str = "samples"  # "samples" or "batches"
    _train_sampler: EpochSampler | None = None  # the last training sampler built: its epoch is the data's

    def state_dict(self) -> dict[str, int]:
        t = self.trainer
        if t is None or not math.isfinite(t.num_training_batches):  # not fitting: nothing to resume
            return {}
        epoch, done = training_position(t, self._train_sampler)
        if self._resume_unit == "batches":
            return {"epoch": epoch, "batches_done": done}
        return {"epoch": epoch, "samples_done": done * self.batch_size}

    def load_state_dict(self, state: dict[str, int]) -> None:
        if state:
            self._resume = (state["epoch"], state[f"{self._resume_unit}_done"])

    def _resume_sampler(self, sampler: EpochSampler) -> None:
        """Hands the checkpoint's position (from :meth:`load_state_dict`) to a new training sampler, once, and
        keeps the sampler: its epoch is what the next checkpoint records."""
        self._train_sampler = sampler
        if self._resume is not None:
            sampler.resume_at(*self._resume)
            self._resume = None

    def _shuffled_loader(self, ds: Dataset, collate_fn: Callable | None = None, drop_last: bool = False,
                         chunks: Tensor | None = None, window: int = 1) -> DataLoader:
        """The training loader of a per-sample dataset: a :class:`ResumableSampler` (order by (seed, epoch), DDP
        shards, exact mid-epoch resume) and ``batch_size`` samples a batch; ``drop_last`` keeps full batches only."""
        sampler = ResumableSampler(len(ds), self.seed, True, *world_of(self.trainer),  # type: ignore[arg-type]
                                   chunks=chunks, window=window)
        self._resume_sampler(sampler)
        return DataLoader(ds, batch_size=self.batch_size, sampler=sampler, num_workers=self.num_workers,
                          collate_fn=collate_fn, drop_last=drop_last, persistent_workers=self.num_workers > 0)

    def _batch_loader(self, ds: Dataset, sampler: Sampler | list, collate_fn: Callable | None = None,
                      train: bool = False) -> DataLoader:
        """A loader whose sampler yields index lists that the dataset builds whole batches of (``batch_size=None``);
        ``train``: the sampler is the training one (it resumes where the checkpoint stood)."""
        if train:
            self._resume_sampler(sampler)  # type: ignore[arg-type]
        extra = {"collate_fn": collate_fn} if collate_fn is not None else {}
        return DataLoader(ds, sampler=sampler, batch_size=None, num_workers=self.num_workers,
                          persistent_workers=self.num_workers > 0, **extra)


def training_position(trainer: pl.Trainer, sampler: EpochSampler | None = None) -> tuple[int, int]:
    """``(epoch, batches)``: the training batches the fit loop has taken from the current epoch, where a
    finished epoch reads as the next one's start ``(epoch + 1, 0)``. The epoch is ``sampler``'s data epoch
    where given (a resumed run may number epochs differently: :class:`EpochSampler`), else the trainer's.

    Counted from Lightning's batch progress, not from ``global_step * accumulate_grad_batches``: an epoch's
    last accumulation group steps even when it is incomplete, so steps do not tell batches apart.
    """
    epoch = trainer.current_epoch if sampler is None else sampler.epoch
    done = trainer.fit_loop.epoch_loop.batch_progress.current.ready
    if done >= trainer.num_training_batches:
        return epoch + 1, 0
    return epoch, done

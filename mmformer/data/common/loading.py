"""The evaluation loader every DataModule shares (and :func:`world_of`, the DDP world it shards over)."""

from __future__ import annotations

from typing import Any, Callable, Sized

from torch.utils.data import DataLoader, Dataset

from mmformer.data.common.sampling import UnpaddedDistributedSampler, world_of

__all__ = ["eval_loader", "world_of"]


def eval_loader(dataset: Dataset | Sized, batch_size: int, trainer: Any = None, num_workers: int = 0,
                collate_fn: Callable | None = None) -> DataLoader:
    """A validation/test/predict loader in dataset order; under DDP each rank reads a disjoint,
    unpadded shard (rank ``r`` of ``w`` takes samples ``r::w``), so every sample is counted once and
    DDP metrics equal single-process ones exactly.

    Args:
        dataset: map-style dataset (or a tensor of items, e.g. episode seeds ``(n,)``).
        batch_size: samples per batch.
        trainer: the DataModule's ``trainer`` (None outside a Trainer: one process).
        num_workers: DataLoader worker processes (kept alive between epochs when > 0).
        collate_fn: batch builder (None = PyTorch's default collate).
    """
    world, rank = world_of(trainer)
    sampler = UnpaddedDistributedSampler(dataset, world, rank) if world > 1 else None
    return DataLoader(dataset, batch_size=batch_size, sampler=sampler,  # type: ignore[arg-type]
                      num_workers=num_workers, collate_fn=collate_fn, persistent_workers=num_workers > 0)

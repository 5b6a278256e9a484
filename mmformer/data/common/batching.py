"""Batch samplers shared by the DataModules: token-budget and length-bucketed training batches, and
sharded evaluation batches. Each yields ``list[int]`` per batch (a DataLoader with ``batch_size=None``
hands it to a dataset that collates the whole batch at once).

Every one subclasses ``DistributedSampler`` only so Lightning does not wrap it again under DDP: it
shards batches itself. Training orders depend only on (seed, epoch), and ``resume_at(epoch, k)``
restarts an epoch at its ``k``-th batch (a mid-epoch checkpoint, counted in batches; see
:class:`~mmformer.data.common.epochs.EpochSampler`).
"""

from __future__ import annotations

import math
from typing import Iterator

import torch
from torch import Tensor
from torch.utils.data import DistributedSampler

from mmformer.data.common.epochs import EpochSampler


def token_budget_batches(lengths: Tensor, max_tokens: int, generator: torch.Generator, chunk: int) -> list[list[int]]:
    """Shuffled batches whose padded size ``len(batch) * max(lengths[batch])`` stays within ``max_tokens``.

    The permutation is cut into chunks of ``chunk`` samples; each chunk is sorted by length (so
    batches hold similar lengths and little padding) and cut greedily; the batches are shuffled.
    A sample longer than ``max_tokens`` gets a batch of its own.
    """
    perm = torch.randperm(len(lengths), generator=generator)
    batches: list[list[int]] = []
    for part in perm.split(chunk):
        order = part[torch.argsort(lengths[part], stable=True)].tolist()
        lens = lengths[order].tolist()  # ascending: the last sample of a batch is its longest
        batch: list[int] = []
        for i, n in zip(order, lens):  # once per epoch, not per step
            if batch and (len(batch) + 1) * n > max_tokens:
                batches.append(batch)
                batch = []
            batch.append(i)
        if batch:
            batches.append(batch)
    shuffle = torch.randperm(len(batches), generator=generator).tolist()
    return [batches[i] for i in shuffle]


class TokenBudgetBatchSampler(EpochSampler):
    """Training batches of index lists, resumable, sharded by rank. Yields ``list[int]`` per batch.

    It subclasses ``DistributedSampler`` only so Lightning does not wrap it again under DDP: it
    shards batches itself. Every epoch has the same number of batches per rank (``len(self)``,
    fixed by epoch 0 — later epochs repeat or drop their last few batches to match), which keeps
    the mid-epoch resume arithmetic exact and ranks in step.

    Args:
        lengths: ``(N,)`` padded-size length of each sample.
        max_tokens: padded tokens per batch.
        seed: epoch ``e`` uses the generator seeded by ``seed`` and ``e``.
        num_replicas, rank: the DDP world size and this process's rank.
        chunk_batches: a sorting chunk holds about this many batches' worth of samples.
    """

    def __init__(self, lengths: Tensor, max_tokens: int, seed: int = 0, num_replicas: int = 1, rank: int = 0,
                 chunk_batches: int = 64) -> None:
        super().__init__(range(len(lengths)), num_replicas=num_replicas, rank=rank,  # type: ignore[arg-type]
                         shuffle=True, seed=seed)
        if len(lengths) == 0:
            raise ValueError("no training pairs to batch")
        self.lengths, self.max_tokens = lengths, max_tokens
        per_batch = max(1, max_tokens // max(1, int(lengths.float().mean())))
        self.chunk = per_batch * chunk_batches
        self.num_batches = max(1, len(self._batches(0)) // num_replicas)

    def _batches(self, epoch: int) -> list[list[int]]:
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
        return token_budget_batches(self.lengths, self.max_tokens, g, self.chunk)

    def __iter__(self) -> Iterator[list[int]]:  # type: ignore[override]
        # A generator, so the epoch is read at the first batch, not when iter() is called (Lightning creates
        # the first epoch's iterator before it calls set_epoch). With DataLoader workers the first batch is
        # drawn at once, so a resumed run also needs resume_at's epoch (EpochSampler).
        batches = self._batches(self.epoch)
        mine = [batches[(self.rank + k * self.num_replicas) % len(batches)] for k in range(self.num_batches)]
        yield from mine[self._start():]

    def __len__(self) -> int:
        return self.num_batches


class EvalBatchSampler(DistributedSampler):
    """Evaluation batches of ``batch_size`` indices: rank ``r`` of ``w`` takes samples ``r::w`` (disjoint,
    unpadded — each sample evaluated once), longest first when ``lengths`` is given (less padding in
    generation), else in file order (prediction outputs stay in input order)."""

    def __init__(self, n: int, batch_size: int, lengths: Tensor | None = None, num_replicas: int = 1,
                 rank: int = 0) -> None:
        super().__init__(range(n), num_replicas=num_replicas, rank=rank, shuffle=False)  # type: ignore[arg-type]
        idx = torch.arange(rank, n, num_replicas)
        if lengths is not None:
            idx = idx[torch.argsort(lengths[idx], descending=True, stable=True)]
        self.batches = [b.tolist() for b in idx.split(batch_size)]

    def __iter__(self) -> Iterator[list[int]]:  # type: ignore[override]
        return iter(self.batches)

    def __len__(self) -> int:
        return len(self.batches)



class BucketBatchSampler(EpochSampler):
    """Batches of similar duration, so padding stays small; yields lists of indices.

    Each epoch (seeded by ``seed`` and the epoch) shuffles the utterances, sorts each window of
    ``bucket_batches`` batches by duration, cuts it into batches and shuffles the batch order.
    Without ``shuffle`` (evaluation) the whole split is sorted by duration. Rank ``r`` of ``W``
    takes batches ``r, r+W, ...``; training keeps an equal count per rank, evaluation keeps every
    utterance exactly once. A subclass of DistributedSampler, so Lightning leaves it in place.

    Args:
        durations: ``(N,)`` seconds (or samples) per utterance.
        batch_size: utterances per batch.
        shuffle: training order (see above) or the sorted evaluation order.
        seed: shuffling seed.
        num_replicas, rank: DDP world size and this process's rank.
        bucket_batches: batches per sorting window (larger = less padding, less randomness).
        virtual: training batches hold ``epoch * N + i`` instead of ``i`` (a dataset reads ``v % N``), so
            per-sample augmentation can be seeded by epoch and sample.
    """

    def __init__(self, durations: Tensor, batch_size: int, shuffle: bool = True, seed: int = 0,
                 num_replicas: int = 1, rank: int = 0, bucket_batches: int = 50, virtual: bool = False) -> None:
        super().__init__(range(len(durations)), num_replicas=num_replicas, rank=rank, shuffle=shuffle, seed=seed)
        if batch_size < 1:
            raise ValueError(f"batch_size must be positive, got {batch_size}")
        self.durations, self.batch_size, self.bucket_batches = durations.float(), batch_size, bucket_batches
        self.virtual = virtual

    def _batches(self) -> list[list[int]]:
        n = len(self.durations)
        if not self.shuffle:  # enough batches that every rank gets one (Lightning refuses an empty loader)
            order = torch.sort(self.durations, stable=True).indices
            nb = max(math.ceil(n / self.batch_size), min(n, self.num_replicas))
            return [b.tolist() for b in order.tensor_split(nb)]
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        perm = torch.randperm(n, generator=g)
        batches: list[Tensor] = []
        for window in perm.split(self.batch_size * self.bucket_batches):
            batches += list(window[torch.sort(self.durations[window], stable=True).indices].split(self.batch_size))
        return [batches[i].tolist() for i in torch.randperm(len(batches), generator=g).tolist()]

    def __iter__(self) -> Iterator[list[int]]:  # type: ignore[override]
        # A generator, as TokenBudgetBatchSampler's: the epoch is read at the first batch
        batches = self._batches()
        if self.shuffle and self.num_replicas > 1:  # equal counts per rank (repeat a few when too few)
            per = max(1, len(batches) // self.num_replicas)
            batches = (batches * self.num_replicas)[: per * self.num_replicas]
        mine = batches[self.rank :: self.num_replicas]
        mine = mine[self._start():]
        if self.virtual and self.shuffle:
            base = self.epoch * len(self.durations)
            mine = [[base + i for i in b] for b in mine]
        yield from mine

    def __len__(self) -> int:
        nb = len(self._batches())
        if self.shuffle:
            return max(1, nb // self.num_replicas) if self.num_replicas > 1 else nb
        return len(range(self.rank, nb, self.num_replicas))

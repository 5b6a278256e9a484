"""The data side of packed sequences: first-fit packing of a (length-bucketed) batch into rows.

A DataModule built with ``pack_len: N`` marks its training batches with ``batch["pack_len"] = N``
(:class:`MarkPacked`, its loader's ``collate_fn``); the task turns the mark into :class:`Packing`
plans on the host, before the batch moves to the device (``on_before_batch_transfer``), from the
tokenizers' ``token_counts`` — only the model knows how many tokens an utterance becomes. A plan is
a deterministic function of the batch's lengths, so a resumed run packs every batch as before, and the
batch order (the samplers') is untouched.
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

import numpy as np
import torch
from torch import Tensor

from mmformer.layers.packing import Packing

PACK_KEY = "pack_len"


def token_counter(tokenizer: Any) -> Callable[[Any], Tensor]:
    """``tokenizer.token_counts``: ``(B,)`` tokens each sample of a batch becomes, which packing plans with."""
    count = getattr(tokenizer, "token_counts", None)
    if count is None:
        raise ValueError(f"{type(tokenizer).__name__} has no token_counts(inputs), which packing plans with; "
                         f"drop the data's pack_len or add the method")
    return count


def plan_packing(lengths: Tensor | Sequence[Tensor], budget: int) -> list[Packing]:
    """First-fit-decreasing packing of samples into rows of at most ``budget`` tokens per side.

    Args:
        lengths: ``(B,)`` real tokens per sample, or one such tensor per side packed together
            (a seq2seq pair: source and target). A sample takes the same row on every side, so a
            target's row holds exactly its own source's row (cross-attention stays within the row).
        budget: tokens per row and side; every sample must fit in one row.
    Returns:
        One :class:`Packing` per side (same rows, each side's own columns and width).
    """
    sides = [lengths] if isinstance(lengths, Tensor) else list(lengths)
    if budget < 1:
        raise ValueError(f"pack_len must be positive, got {budget}")
    lens = torch.stack([s.detach().to("cpu", torch.long).reshape(-1) for s in sides], 1)  # (B, k)
    over = (lens > budget).any(1).nonzero()
    if len(over):
        i = int(over[0])
        raise ValueError(f"sample {i} of the batch has {lens[i].tolist()} tokens, more than pack_len={budget} "
                         f"fits in one row; raise pack_len to at least the longest sample "
                         f"({int(lens.max())} here) or shorten the data's maximum lengths")
    a = lens.numpy()
    b, k = a.shape
    order = np.argsort(-a.sum(1), kind="stable")  # longest first: first-fit decreasing
    fills = np.zeros((max(b, 1), k), dtype=np.int64)
    row, start = np.zeros(b, dtype=np.int64), np.zeros((b, k), dtype=np.int64)
    rows = 0
    for i in order:  # B steps of a vectorized row test: ~100 samples a batch, once per step on the host
        fits = np.flatnonzero((fills[:rows] + a[i] <= budget).all(1))
        r = int(fits[0]) if len(fits) else rows
        rows = max(rows, r + 1)
        row[i], start[i] = r, fills[r]
        fills[r] += a[i]
    widths = fills[:rows].max(0) if rows else np.zeros(k, dtype=np.int64)
    row_t, start_t = torch.from_numpy(row), torch.from_numpy(start)
    return [Packing(row_t, start_t[:, j].contiguous(), lens[:, j].contiguous(), max(rows, 1), max(int(widths[j]), 1))
            for j in range(k)]


class MarkPacked:
    """A loader's ``collate_fn`` for already-collated batches (``batch_size=None``): adds ``pack_len``.

    Args:
        pack_len: tokens per packed row and side (see :func:`plan_packing`).
        collate: applied first (e.g. the DataModule's own collate), or None for a batch that is ready.
    """

    def __init__(self, pack_len: int, collate: Any = None) -> None:
        if pack_len < 1:
            raise ValueError(f"pack_len must be positive (or None for padded batches), got {pack_len}")
        self.pack_len, self.collate = pack_len, collate

    def __call__(self, batch: Any) -> dict[str, Any]:
        batch = self.collate(batch) if self.collate is not None else batch
        return {**batch, PACK_KEY: self.pack_len}


__all__ = ["MarkPacked", "PACK_KEY", "plan_packing"]

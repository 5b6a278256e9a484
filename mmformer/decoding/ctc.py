"""CTC decoding (Graves et al. 2006): frame-wise label distributions → label sequences."""

from __future__ import annotations

import torch
from torch import Tensor


def ctc_greedy_decode(log_probs: Tensor, lengths: Tensor | None = None, blank: int = 0) -> list[list[int]]:
    """Best-path decoding: the most likely label per frame, repeats collapsed, blanks removed.

    Args:
        log_probs: ``(B, T, V)`` per-frame (log-)scores; only the argmax matters.
        lengths: ``(B,)`` valid frames per row (None = all T).
        blank: the blank label's id.
    Returns:
        one label list per row.
    """
    if log_probs.dim() != 3:
        raise ValueError(f"log_probs must be (B, T, V), got shape {tuple(log_probs.shape)}")
    b, t, _ = log_probs.shape
    best = log_probs.argmax(-1)  # (B, T)
    keep = best != blank
    keep[:, 1:] &= best[:, 1:] != best[:, :-1]  # a label repeated without a blank between is one label
    if lengths is not None:
        keep &= torch.arange(t, device=best.device)[None, :] < lengths.to(best.device)[:, None]
    best, keep = best.cpu(), keep.cpu()  # one transfer for the whole batch
    return [best[i][keep[i]].tolist() for i in range(b)]


__all__ = ["ctc_greedy_decode"]

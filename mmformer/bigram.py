"""A smoothed bigram language model over token ids: the baseline a neural language model must beat.

Interpolated Kneser-Ney (Kneser & Ney 1995; Chen & Goodman 1998, eq. 13), the standard smoothed n-gram:

    P(w | v) = max(c(v, w) - d, 0) / c(v)  +  d * N1+(v .) / c(v) * P_cont(w)
    P_cont(w) = max(N1+(. w) - d, 0) / N1+(. .)  +  d * |{w: N1+(. w) > 0}| / N1+(. .) / V

``c`` counts bigrams, ``N1+(v .)`` the distinct words after ``v``, ``N1+(. w)`` the distinct words before
``w`` (a word's *continuation* count); the continuation distribution is itself interpolated with the
uniform one, so every id of the vocabulary keeps a positive probability and perplexity stays finite.
An unseen context ``v`` backs off to ``P_cont`` entirely. Counts are dense ``(V, V)`` tensors: fine for
the few-thousand-piece vocabularies of this project's recipes.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

_MAX_VOCAB = 16_384  # (V, V) float32 counts: 1 GiB at this size


def _pairs(rows: Tensor, pad_id: int) -> tuple[Tensor, Tensor]:
    """Consecutive ``(previous, next)`` ids inside each right-padded row of ``rows (N, T)``: ``(M,)`` each."""
    if rows.dim() != 2 or rows.is_floating_point():
        raise ValueError(f"rows must be (N, T) integer ids, got {rows.dtype} {tuple(rows.shape)}")
    prev, nxt = rows[:, :-1], rows[:, 1:]
    keep = (prev != pad_id) & (nxt != pad_id)
    return prev[keep].long(), nxt[keep].long()


class BigramLM:
    """Interpolated Kneser-Ney bigram model of right-padded id rows (see the module doc).

    Args:
        vocab_size: V, the ids' range.
        discount: the absolute discount d, in (0, 1).
        pad_id: the padding id (never counted or scored).
    """

    def __init__(self, vocab_size: int, discount: float = 0.75, pad_id: int = 0) -> None:
        if not 0 < vocab_size <= _MAX_VOCAB:
            raise ValueError(f"vocab_size must be in 1..{_MAX_VOCAB} (dense counts), got {vocab_size}")
        if not 0.0 < discount < 1.0:
            raise ValueError(f"discount must be in (0, 1), got {discount}")
        self.vocab_size, self.discount, self.pad_id = vocab_size, discount, pad_id
        self.counts = torch.zeros(vocab_size, vocab_size)  # (V, V) c(v, w)

    def fit(self, rows: Tensor) -> BigramLM:
        """Adds the bigrams of ``rows (N, T)`` (right-padded ids, e.g. bos + pieces + eos) to the counts."""
        prev, nxt = _pairs(rows, self.pad_id)
        if len(prev) and int(torch.maximum(prev, nxt).max()) >= self.vocab_size:
            raise ValueError(f"an id is outside the vocabulary of {self.vocab_size}")
        v = self.vocab_size
        self.counts += torch.bincount(prev * v + nxt, minlength=v * v).view(v, v).float()
        return self

    def log_probs(self, prev: Tensor, nxt: Tensor) -> Tensor:
        """Natural-log ``P(nxt | prev)`` for ids ``prev, nxt (M,)``: ``(M,)``."""
        c, d, v = self.counts, self.discount, self.vocab_size
        if c.sum() == 0:
            raise RuntimeError("the bigram model has no counts: call fit() first")
        seen = c > 0
        before = seen.sum(0).float()  # (V,) N1+(. w)
        types = seen.sum().float()  # N1+(. .)
        p_cont = (before - d).clamp_min(0) / types + d * (before > 0).sum() / types / v  # (V,)
        ctx = c.sum(1)  # (V,) c(v)
        after = seen.sum(1).float()  # (V,) N1+(v .)
        cv = ctx[prev]
        higher = (c[prev, nxt] - d).clamp_min(0) / cv.clamp_min(1)
        weight = torch.where(cv > 0, d * after[prev] / cv.clamp_min(1), torch.ones_like(cv))
        return (higher + weight * p_cont[nxt]).log()

    def perplexity(self, rows: Tensor) -> float:
        """``exp`` of the mean negative log-probability of every bigram in ``rows (N, T)``: each id after the
        first of its row, given the one before (what a causal LM's loss averages over, on the same rows)."""
        prev, nxt = _pairs(rows, self.pad_id)
        if not len(prev):
            raise ValueError("no bigram to score: every row has fewer than two ids")
        return math.exp(float(-self.log_probs(prev, nxt).mean()))


__all__ = ["BigramLM"]

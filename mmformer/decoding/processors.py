"""Logit processors of decoding: pure functions on ``(R, V)`` scores (top-k, nucleus, CTRL's repetition penalty,
n-gram blocking) and GNMT's length penalty. :mod:`mmformer.generation` applies them step by step."""

from __future__ import annotations

import torch
from torch import Tensor


def top_k_filter(logits: Tensor, k: int) -> Tensor:
    """Keeps the ``k`` largest logits of the last dim, the rest set to -inf (k <= 0: unchanged)."""
    if k <= 0 or k >= logits.shape[-1]:
        return logits
    kth = logits.topk(k, dim=-1).values[..., -1:]
    return logits.masked_fill(logits < kth, float("-inf"))


def top_p_filter(logits: Tensor, p: float) -> Tensor:
    """Nucleus filter (Holtzman et al. 2020): keeps the most likely tokens whose probabilities sum
    to at least ``p`` (always at least one), the rest set to -inf (p >= 1: unchanged)."""
    if p >= 1.0:
        return logits
    sorted_logits, order = logits.sort(dim=-1, descending=True)
    cum = sorted_logits.softmax(-1).cumsum(-1)
    drop_sorted = (cum - sorted_logits.softmax(-1)) >= p  # mass before this token already reaches p
    drop = drop_sorted.scatter(-1, order, drop_sorted)
    return logits.masked_fill(drop, float("-inf"))


def repetition_penalty(logits: Tensor, generated: Tensor, penalty: float) -> Tensor:
    """CTRL's repetition penalty (Keskar et al. 2019, as HF applies it): for every token id present in
    ``generated (R, t)``, its logit in ``logits (R, V)`` is divided by ``penalty`` when positive and
    multiplied by it when negative (penalty 1: unchanged)."""
    if penalty == 1.0 or generated.shape[1] == 0:
        return logits
    seen = torch.zeros_like(logits, dtype=torch.bool).scatter_(1, generated, True)  # (R, V)
    return torch.where(seen, torch.where(logits > 0, logits / penalty, logits * penalty), logits)


def repeated_ngram_bans(generated: Tensor, n: int, vocab_size: int) -> Tensor:
    """Tokens that would repeat an n-gram of ``generated (R, t)``: ``(R, V)`` bool, True = banned.

    Token ``v`` is banned for row r when the row's last ``n - 1`` tokens followed by ``v`` already occur
    in it (n = 1 bans every generated token). Vectorized over rows and positions (n <= 0: none banned).
    """
    r, t = generated.shape
    banned = torch.zeros(r, vocab_size, dtype=torch.bool, device=generated.device)
    if n <= 0 or t < n:
        return banned
    windows = generated.unfold(1, n, 1)  # (R, t-n+1, n) every n-gram so far
    suffix = generated[:, t - n + 1:]  # (R, n-1) what the next token would extend
    match = (windows[..., :-1] == suffix[:, None, :]).all(-1)  # (R, t-n+1) n-grams with that prefix
    hits = torch.zeros(r, vocab_size, device=generated.device).scatter_add_(1, windows[..., -1], match.float())
    return hits > 0


def length_penalty(lengths: Tensor, alpha: float) -> Tensor:
    """GNMT's ``((5 + len) / 6) ** alpha`` (Wu et al. 2016)."""
    return ((5.0 + lengths.float()) / 6.0) ** alpha


__all__ = ["length_penalty", "repeated_ngram_bans", "repetition_penalty", "top_k_filter", "top_p_filter"]

"""CTC decoding (Graves et al. 2006): frame-wise label distributions → label sequences."""

from __future__ import annotations

import math

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


def ctc_prefix_beam_search(
    log_probs: Tensor, lengths: Tensor | None = None, beam_size: int = 8, blank: int = 0, prune: float = -12.0
) -> list[list[int]]:
    """CTC prefix beam search (Hannun et al. 2014, without a language model).

    Unlike best-path decoding it sums the probability of every alignment of a prefix, so a label
    whose mass is spread over several frames is not lost to one dominant blank.

    Args:
        log_probs: ``(B, T, V)`` per-frame log-probabilities (log_softmax outputs).
        lengths: ``(B,)`` valid frames per row (None = all T).
        beam_size: prefixes kept after each frame.
        blank: the blank label's id.
        prune: labels with a frame log-probability below this are not extended (speed only).
    Returns:
        the best label list per row.
    """
    if log_probs.dim() != 3:
        raise ValueError(f"log_probs must be (B, T, V), got shape {tuple(log_probs.shape)}")
    if beam_size < 1:
        raise ValueError(f"beam_size must be >= 1, got {beam_size}")
    b, t, v = log_probs.shape
    lp = log_probs.detach().float().cpu()  # one transfer; the search itself is sequential per row
    lens = [t] * b if lengths is None else lengths.cpu().tolist()
    k = min(v, beam_size + 1)
    top_id = lp.topk(k, dim=-1).indices  # only the likeliest labels of a frame can extend a beam
    neg = float("-inf")

    def add(a: float, c: float) -> float:
        return a if c == neg else c if a == neg else max(a, c) + math.log1p(math.exp(-abs(a - c)))

    out = []
    for i in range(b):
        # prefix → (log P(prefix, ends in blank), log P(prefix, ends in its last label))
        beams: dict[tuple[int, ...], tuple[float, float]] = {(): (0.0, neg)}
        rows, cands = lp[i, : lens[i]].tolist(), top_id[i, : lens[i]].tolist()
        for row, cand in zip(rows, cands):
            nxt: dict[tuple[int, ...], list[float]] = {}

            def acc(prefix: tuple[int, ...], which: int, value: float) -> None:
                cur = nxt.setdefault(prefix, [neg, neg])
                cur[which] = add(cur[which], value)

            for prefix, (pb, pnb) in beams.items():
                total = add(pb, pnb)
                acc(prefix, 0, total + row[blank])  # a blank keeps the prefix
                if prefix:  # the last label again, without a blank between: collapses into the prefix
                    acc(prefix, 1, pnb + row[prefix[-1]])
                for label in cand:
                    score = row[label]
                    if label == blank or score < prune:
                        continue
                    # a label equal to the last one starts a new label only after a blank
                    acc(prefix + (label,), 1, (pb if prefix and prefix[-1] == label else total) + score)
            ranked = sorted(nxt.items(), key=lambda kv: add(*kv[1]), reverse=True)[:beam_size]
            beams = {p: (s[0], s[1]) for p, s in ranked}
        out.append(list(max(beams.items(), key=lambda kv: add(*kv[1]))[0]))
    return out

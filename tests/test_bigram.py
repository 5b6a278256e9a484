"""The Kneser-Ney bigram baseline: a loop-by-loop reference, normalization, and sane perplexities."""

from __future__ import annotations

import math
from collections import Counter

import pytest
import torch

from mmformer.bigram import BigramLM

ROWS = torch.tensor([[2, 5, 6, 7, 3, 0], [2, 5, 7, 3, 0, 0], [2, 6, 6, 5, 7, 3], [2, 8, 3, 0, 0, 0]])
V = 10


def _reference(rows: torch.Tensor, d: float, v: int, a: int, b: int) -> float:
    """Interpolated Kneser-Ney P(b | a) from Python counters (Chen & Goodman 1998, eq. 13)."""
    bigrams: Counter = Counter()
    for row in rows.tolist():
        ids = [i for i in row if i != 0]
        bigrams.update(zip(ids, ids[1:]))
    types = len(bigrams)
    before = Counter(w for (_, w) in bigrams)
    p_cont = max(before[b] - d, 0) / types + d * len(before) / types / v
    ctx = sum(n for (x, _), n in bigrams.items() if x == a)
    if ctx == 0:
        return p_cont
    after = sum(1 for (x, _) in bigrams if x == a)
    return max(bigrams[a, b] - d, 0) / ctx + d * after / ctx * p_cont


def test_matches_a_loop_reference() -> None:
    lm = BigramLM(V, 0.75).fit(ROWS)
    prev, nxt = torch.arange(V).repeat_interleave(V), torch.arange(V).repeat(V)
    got = lm.log_probs(prev, nxt).exp()
    want = torch.tensor([_reference(ROWS, 0.75, V, a, b) for a, b in zip(prev.tolist(), nxt.tolist())])
    torch.testing.assert_close(got, want.float())


def test_each_context_is_a_distribution() -> None:
    lm = BigramLM(V, 0.6).fit(ROWS)
    prev, nxt = torch.arange(V).repeat_interleave(V), torch.arange(V).repeat(V)
    p = lm.log_probs(prev, nxt).exp().view(V, V)
    torch.testing.assert_close(p.sum(1), torch.ones(V))  # seen contexts and unseen ones (backed off)
    assert (p > 0).all()  # unseen bigrams and unseen words keep mass: finite perplexity


def test_perplexity_is_low_on_training_text_and_finite_elsewhere() -> None:
    lm = BigramLM(V).fit(ROWS)
    pairs = (ROWS[:, 1:] != 0).sum().item()
    manual = math.exp(-float(sum(lm.log_probs(torch.tensor([a]), torch.tensor([b])).item()
                                 for row in ROWS.tolist() for a, b in zip(row, row[1:]) if a and b)) / pairs)
    assert lm.perplexity(ROWS) == pytest.approx(manual, rel=1e-5)
    assert lm.perplexity(ROWS) < V  # better than uniform on what it was fit on
    assert math.isfinite(lm.perplexity(torch.tensor([[2, 9, 1, 4, 3]])))  # unseen ids
    assert lm.perplexity(torch.tensor([[2, 9, 1, 4, 3]])) > lm.perplexity(ROWS)


def test_errors_are_clear() -> None:
    with pytest.raises(RuntimeError, match="fit"):
        BigramLM(V).perplexity(ROWS)
    with pytest.raises(ValueError, match="outside the vocabulary"):
        BigramLM(4).fit(ROWS)
    with pytest.raises(ValueError, match="discount"):
        BigramLM(V, discount=1.5)

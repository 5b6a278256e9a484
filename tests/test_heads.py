"""Every head: one Pooler (cls/mean/attention, prefix skipped) shared by classification and the
contrastive towers; tied LM head; CTC, projection and action heads."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from mmformer.heads import ActionHead, ClassificationHead, CTCHead, LMHead, Pooler, ProjectionHead, masked_mean


def _hidden() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    hidden = torch.randn(2, 5, 8, generator=g)
    mask = torch.tensor([[True] * 5, [True, True, True, False, False]])
    return hidden, mask


def test_mean_pool_skips_prefix_tokens_and_padding() -> None:
    hidden, mask = _hidden()
    pooled = Pooler(8, "mean")(hidden, mask, num_prefix_tokens=1)
    assert torch.allclose(pooled[0], hidden[0, 1:].mean(0)) and torch.allclose(pooled[1], hidden[1, 1:3].mean(0))
    assert torch.allclose(masked_mean(hidden, None), hidden.mean(1))


def test_cls_pool_takes_the_first_token_and_needs_one() -> None:
    hidden, mask = _hidden()
    assert torch.equal(Pooler(8, "cls")(hidden, mask, 1), hidden[:, 0])
    with pytest.raises(ValueError, match="prepends a CLS token"):
        Pooler(8, "cls")(hidden, mask, 0)
    with pytest.raises(ValueError, match="pool must be"):
        Pooler(8, "max")  # type: ignore[arg-type]


def test_attention_pool_ignores_padding_and_prefix() -> None:
    torch.manual_seed(0)
    pool = Pooler(8, "attention", num_heads=2).eval()
    hidden, mask = _hidden()
    changed = hidden.clone()
    changed[1, 3:] = 100.0  # padded positions
    changed[:, 0] = -50.0  # the prefix token
    assert torch.allclose(pool(hidden, mask, 1), pool(changed, mask, 1), atol=1e-6)


def test_classification_head_is_pool_norm_dropout_linear() -> None:
    torch.manual_seed(0)
    head = ClassificationHead(8, 3, "mean", pool_norm=True).eval()
    hidden, mask = _hidden()
    assert isinstance(head.pool, Pooler) and head.num_classes == 3
    assert torch.allclose(head(hidden, mask, 1), head.fc(head.norm(head.pool(hidden, mask, 1))))
    with pytest.raises(ValueError, match="at least 2"):
        ClassificationHead(8, 1)


def test_lm_head_is_tied_to_the_embedding_and_draws_the_rng_like_a_linear() -> None:
    emb = nn.Embedding(10, 8)
    torch.manual_seed(0)
    head = LMHead(8, 10, emb)
    after_head = torch.rand(1)
    torch.manual_seed(0)
    nn.Linear(8, 10, bias=False)
    assert head.weight is emb.weight and torch.equal(torch.rand(1), after_head)
    x = torch.randn(2, 3, 8)
    assert torch.allclose(head(x), x @ emb.weight.t())
    assert LMHead(8, 10).bias is None
    with pytest.raises(ValueError, match="tied embedding"):
        LMHead(8, 12, emb)


def test_projection_ctc_and_action_heads() -> None:
    proj = ProjectionHead(8, 4)
    x = torch.randn(3, 8)
    assert proj.bias is None and torch.allclose(proj(x, normalize=True), F.normalize(x @ proj.weight.t(), dim=-1))
    ctc = CTCHead(8, 6)
    assert ctc(torch.randn(2, 5, 8)).shape == (2, 5, 6)
    h = torch.randn(2, 4, 8) * 100
    cont, disc = ActionHead(8, 2, discrete=False), ActionHead(8, 3, discrete=True)
    assert bool((cont(h).abs() <= 1).all()) and disc(h).shape == (2, 4, 3)
    assert torch.allclose(disc(h), disc.fc(h))


def test_last_pooling_reads_each_rows_last_real_token() -> None:
    hidden, mask = _hidden()
    pooled = Pooler(8, "last")(hidden, mask)
    torch.testing.assert_close(pooled, torch.stack([hidden[0, 4], hidden[1, 2]]))
    torch.testing.assert_close(Pooler(8, "last")(hidden, None), hidden[:, -1])


def test_lm_head_bias_is_opt_in_and_zero_initialized() -> None:
    emb = nn.Embedding(11, 8)
    assert LMHead(8, 11, emb).bias is None
    head = LMHead(8, 11, emb, bias=True)
    assert head.weight is emb.weight and torch.equal(head.bias, torch.zeros(11))



"""Positional schemes: RoPE relativity and norm preservation, sin-cos tables, learned tables, resizing."""

from __future__ import annotations

import math

import pytest
import torch

from mmformer.layers.positions import (
    LearnedPositions,
    RotaryEmbedding,
    SinusoidalPositions,
    apply_rotary,
    resize_2d,
    sincos_2d,
    sinusoidal_1d,
)
from mmformer.tokenizers.base import TokenBatch

ATOL = 1e-5


def rotate(x: torch.Tensor, positions: torch.Tensor, rope: RotaryEmbedding) -> torch.Tensor:
    cos, sin = rope(positions)
    return apply_rotary(x, cos, sin)


# --------------------------------------------------------------------------- RoPE


@pytest.mark.parametrize("head_dim", [8, 64])
@pytest.mark.parametrize("m,n,shift", [(0, 0, 5), (3, 7, 11), (9, 2, 100), (40, 1, -1)])
def test_rope_scores_depend_only_on_relative_offset(head_dim, m, n, shift):
    torch.manual_seed(0)
    rope = RotaryEmbedding(head_dim)
    q = torch.randn(2, 3, 1, head_dim)
    k = torch.randn(2, 3, 1, head_dim)

    def score(pq: int, pk: int) -> torch.Tensor:
        qr = rotate(q, torch.tensor([pq]), rope)
        kr = rotate(k, torch.tensor([pk]), rope)
        return (qr * kr).sum(-1)

    torch.testing.assert_close(score(m + shift, n + shift), score(m, n), atol=ATOL, rtol=1e-5)


def test_rope_scores_change_with_offset():
    torch.manual_seed(0)
    rope = RotaryEmbedding(16)
    q, k = torch.randn(1, 1, 1, 16), torch.randn(1, 1, 1, 16)
    s0 = (rotate(q, torch.tensor([0]), rope) * rotate(k, torch.tensor([0]), rope)).sum()
    s3 = (rotate(q, torch.tensor([3]), rope) * rotate(k, torch.tensor([0]), rope)).sum()
    assert not torch.allclose(s0, s3, atol=1e-3)


def test_rope_position_zero_is_identity():
    torch.manual_seed(0)
    rope = RotaryEmbedding(16)
    x = torch.randn(2, 2, 1, 16)
    torch.testing.assert_close(rotate(x, torch.tensor([0]), rope), x, atol=0, rtol=0)


@pytest.mark.parametrize("head_dim", [2, 16, 64])
def test_apply_rotary_preserves_norms(head_dim):
    torch.manual_seed(0)
    rope = RotaryEmbedding(head_dim)
    x = torch.randn(2, 3, 50, head_dim)
    out = rotate(x, torch.arange(50) * 37, rope)
    torch.testing.assert_close(out.norm(dim=-1), x.norm(dim=-1), atol=1e-5, rtol=1e-5)
    assert not torch.allclose(out[:, :, 1:], x[:, :, 1:], atol=1e-3)


def test_rope_matches_rotate_half_formula():
    """Channel i pairs with i + hd/2 and turns by angle pos * base**(-2i/hd)."""
    torch.manual_seed(0)
    hd, base = 8, 500.0
    rope = RotaryEmbedding(hd, base)
    x = torch.randn(1, 1, 4, hd)
    pos = torch.tensor([0, 1, 5, 17])
    out = rotate(x, pos, rope)
    for t, p in enumerate(pos.tolist()):
        for i in range(hd // 2):
            a = p * base ** (-2 * i / hd)
            x1, x2 = x[0, 0, t, i].item(), x[0, 0, t, i + hd // 2].item()
            assert out[0, 0, t, i].item() == pytest.approx(x1 * math.cos(a) - x2 * math.sin(a), abs=1e-5)
            assert out[0, 0, t, i + hd // 2].item() == pytest.approx(x2 * math.cos(a) + x1 * math.sin(a), abs=1e-5)


def test_rope_batched_positions_broadcast_per_row():
    torch.manual_seed(0)
    rope = RotaryEmbedding(8)
    x = torch.randn(2, 3, 5, 8)
    pos = torch.stack([torch.arange(5), torch.arange(5) + 7])
    cos, sin = rope(pos)
    assert cos.shape == (2, 1, 5, 8)
    out = apply_rotary(x, cos, sin)
    torch.testing.assert_close(out[0:1], rotate(x[0:1], pos[0], rope), atol=0, rtol=0)
    torch.testing.assert_close(out[1:2], rotate(x[1:2], pos[1], rope), atol=0, rtol=0)


def test_rope_is_not_a_weight():
    rope = RotaryEmbedding(8)
    assert len(list(rope.parameters())) == 0 and rope.state_dict() == {}


def test_rope_odd_head_dim_rejected():
    with pytest.raises(ValueError, match="7"):
        RotaryEmbedding(7)


# --------------------------------------------------------------------------- sinusoidal


def test_sinusoidal_1d_values():
    pe = sinusoidal_1d(torch.arange(4), 8)
    assert pe.shape == (4, 8)
    torch.testing.assert_close(pe[0], torch.tensor([0.0] * 4 + [1.0] * 4))
    # position 1, frequency index 1: angle = 10000 ** (-2/8)
    a = 10000 ** (-2 / 8)
    assert pe[1, 1].item() == pytest.approx(math.sin(a), abs=1e-6)
    assert pe[1, 5].item() == pytest.approx(math.cos(a), abs=1e-6)
    with pytest.raises(ValueError, match="7"):
        sinusoidal_1d(torch.arange(3), 7)


def test_sinusoidal_positions_offset_and_limit():
    torch.manual_seed(0)
    sp = SinusoidalPositions(8, max_len=10)
    x = torch.zeros(2, 4, 8)
    torch.testing.assert_close(sp(x, offset=3)[0], sinusoidal_1d(torch.arange(3, 7), 8))
    assert list(sp.parameters()) == []
    with pytest.raises(ValueError, match=r"11 positions.*\(10 positions\)"):
        sp(torch.zeros(1, 11, 8))
    with pytest.raises(ValueError, match="9"):
        SinusoidalPositions(9)


@pytest.mark.parametrize("gh,gw,dim", [(2, 3, 8), (14, 14, 384), (1, 5, 4)])
def test_sincos_2d_shape_and_layout(gh, gw, dim):
    pe = sincos_2d(gh, gw, dim)
    assert pe.shape == (gh * gw, dim)
    grid = pe.view(gh, gw, dim)
    half = dim // 2
    # first half encodes the row: identical along a row; second half the column: identical down a column
    torch.testing.assert_close(grid[:, :, :half], grid[:, :1, :half].expand(gh, gw, half))
    torch.testing.assert_close(grid[:, :, half:], grid[:1, :, half:].expand(gh, gw, half))
    torch.testing.assert_close(grid[:, 0, :half], sinusoidal_1d(torch.arange(gh), half))
    if gh * gw > 1:
        assert torch.unique(pe, dim=0).shape[0] == gh * gw  # every patch distinct


def test_sincos_2d_rejects_dim_not_multiple_of_4():
    with pytest.raises(ValueError, match="6"):
        sincos_2d(2, 2, 6)


@pytest.mark.parametrize("prefix", [0, 1])
@pytest.mark.parametrize("batched", [False, True])
def test_resize_2d(prefix, batched):
    torch.manual_seed(0)
    pos = torch.randn(prefix + 4 * 6, 16)
    if batched:
        pos = pos[None]
    same = resize_2d(pos, (4, 6), (4, 6), num_prefix_tokens=prefix)
    torch.testing.assert_close(same, pos, atol=1e-5, rtol=0)
    other = resize_2d(pos, (4, 6), (8, 3), num_prefix_tokens=prefix)
    assert other.shape == ((1,) if batched else ()) + (prefix + 24, 16)
    bigger = resize_2d(pos, (4, 6), (7, 9), num_prefix_tokens=prefix)
    assert bigger.shape[-2:] == (prefix + 63, 16)
    if prefix:  # the CLS entry is carried over unchanged
        torch.testing.assert_close(bigger[..., :1, :], pos[..., :1, :], atol=0, rtol=0)


def test_resize_2d_rejects_wrong_table_size():
    with pytest.raises(ValueError, match=r"24 entries.*\(4, 6\).*1 prefix.*needs 25"):
        resize_2d(torch.randn(24, 8), (4, 6), (2, 2), num_prefix_tokens=1)


# --------------------------------------------------------------------------- learned


def test_learned_positions_add_table_rows():
    torch.manual_seed(0)
    lp = LearnedPositions(10, 8)
    x = torch.randn(2, 4, 8)
    torch.testing.assert_close(lp(x, offset=2), x + lp.weight[2:6])
    assert lp.weight.requires_grad and lp.weight.shape == (10, 8)
    lp(x).sum().backward()
    assert lp.weight.grad[:4].abs().sum() > 0 and lp.weight.grad[4:].abs().sum() == 0


def test_learned_positions_too_long():
    lp = LearnedPositions(10, 8)
    lp(torch.zeros(1, 10, 8))  # exactly full is fine
    with pytest.raises(ValueError, match=r"12 positions.*\(10 positions\)"):
        lp(torch.zeros(1, 12, 8))
    with pytest.raises(ValueError, match=r"11 positions.*\(10 positions\)"):
        lp(torch.zeros(1, 3, 8), offset=8)


# --------------------------------------------------------------------------- TokenBatch validation


def test_token_batch_rejects_non_bool_mask():
    with pytest.raises(ValueError, match="bool.*torch.int64"):
        TokenBatch(torch.randn(2, 3, 4), torch.ones(2, 3, dtype=torch.long))
    with pytest.raises(ValueError, match="bool.*torch.float32"):
        TokenBatch(torch.randn(2, 3, 4), torch.ones(2, 3))


def test_token_batch_rejects_bad_shapes():
    with pytest.raises(ValueError, match=r"\(2, 4\).*\(2, 3\)"):
        TokenBatch(torch.randn(2, 3, 4), torch.ones(2, 4, dtype=torch.bool))
    with pytest.raises(ValueError, match=r"\(2, 3\)"):
        TokenBatch(torch.randn(2, 3))
    with pytest.raises(ValueError, match="float"):
        TokenBatch(torch.ones(2, 3, 4, dtype=torch.long))
    with pytest.raises(ValueError, match=r"positions.*\(4,\)"):
        TokenBatch(torch.randn(2, 3, 4), positions=torch.arange(4))
    with pytest.raises(ValueError, match="grid"):
        TokenBatch(torch.randn(2, 3, 4), grid=(2, 2))
    ok = TokenBatch(torch.randn(2, 5, 4), positions=torch.arange(5).expand(2, 5), grid=(2, 2), num_prefix_tokens=1)
    assert (ok.batch_size, ok.seq_len, ok.dim) == (2, 5, 4)
    assert ok.real_mask().all() and ok.real_mask().shape == (2, 5)


@pytest.mark.parametrize("cast", ["bf16", "half", "double"])
def test_rope_frequencies_stay_float32_when_the_module_is_cast(cast: str) -> None:
    rope = RotaryEmbedding(16)
    ref_cos, ref_sin = rope(torch.arange(512))
    cast_to = {"bf16": lambda m: m.to(torch.bfloat16), "half": lambda m: m.half(), "double": lambda m: m.double()}
    rope = cast_to[cast](rope)
    assert rope.inv_freq.dtype == torch.float32
    cos, sin = rope(torch.arange(512))
    assert torch.equal(cos, ref_cos) and torch.equal(sin, ref_sin)  # angles of far positions unchanged

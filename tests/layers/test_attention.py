"""SelfAttention / CrossAttention against a naive ``softmax(QKᵀ/√d)V`` written out here, in fp32."""

from __future__ import annotations

import math

import pytest
import torch
from torch import Tensor, nn

from mmformer.layers.attention import CrossAttention, SelfAttention, attend, check_heads
from mmformer.layers.positions import RotaryEmbedding

ATOL = 1e-5
B, T, S, D, H = 3, 7, 5, 32, 4
HD = D // H


# --------------------------------------------------------------------------- naive reference


def naive_rope(x: Tensor, positions: Tensor, base: float = 10000.0) -> Tensor:
    """Rotate-half RoPE written with complex numbers: channel i pairs with channel i + hd/2.

    x: (B, H, T, hd); positions: (T,).
    """
    hd = x.shape[-1]
    half = hd // 2
    freqs = base ** (-torch.arange(0, half, dtype=torch.float64) * 2 / hd)  # (hd/2,)
    angle = positions.double()[:, None] * freqs[None, :]  # (T, hd/2)
    z = torch.complex(x[..., :half].double(), x[..., half:].double()) * torch.polar(torch.ones_like(angle), angle)
    return torch.cat([z.real, z.imag], dim=-1).to(x.dtype)


def naive_attention(
    q: Tensor, k: Tensor, v: Tensor, key_mask: Tensor | None = None, causal: bool = False
) -> tuple[Tensor, Tensor]:
    """q (B, H, T, hd); k, v (B, Hkv, S, hd); key_mask (B, S) True = real. Returns out (B, H, T, hd), weights."""
    b, h, t, hd = q.shape
    s = k.shape[2]
    rep = h // k.shape[1]
    k = torch.repeat_interleave(k, rep, dim=1)  # query head j uses kv head j // rep
    v = torch.repeat_interleave(v, rep, dim=1)
    scores = torch.matmul(q, k.transpose(-1, -2)) / math.sqrt(hd)
    allowed = torch.ones(b, 1, t, s, dtype=torch.bool)
    if key_mask is not None:
        allowed = allowed & key_mask[:, None, None, :]
    if causal:  # the T queries are the last T of the S positions
        allowed = allowed & torch.ones(t, s, dtype=torch.bool).tril(diagonal=s - t)
    scores = scores.masked_fill(~allowed, float("-inf"))
    weights = torch.softmax(scores, dim=-1)
    return torch.matmul(weights, v), weights


def split_heads(x: Tensor, n: int) -> Tensor:  # (B, T, n*hd) → (B, n, T, hd)
    b, t, _ = x.shape
    return x.view(b, t, n, -1).transpose(1, 2)


def merge_heads(x: Tensor) -> Tensor:  # (B, n, T, hd) → (B, T, n*hd)
    b, n, t, hd = x.shape
    return x.transpose(1, 2).reshape(b, t, n * hd)


def reference_self(attn: SelfAttention, x: Tensor, mask: Tensor | None, positions: Tensor | None = None):
    """Recomputes SelfAttention from its own weights: qkv output is [q heads | k heads | v heads]."""
    h, hkv, hd = attn.num_heads, attn.num_kv_heads, attn.head_dim
    qkv = x @ attn.qkv.weight.T + (attn.qkv.bias if attn.qkv.bias is not None else 0)
    q, k, v = qkv.split([h * hd, hkv * hd, hkv * hd], dim=-1)
    q, k, v = split_heads(q, h), split_heads(k, hkv), split_heads(v, hkv)
    q, k = attn.q_norm(q), attn.k_norm(k)
    if attn.rope is not None:
        pos = torch.arange(x.shape[1]) if positions is None else positions
        q, k = naive_rope(q, pos, attn.rope.base), naive_rope(k, pos, attn.rope.base)
    out, w = naive_attention(q, k, v, mask, attn.causal)
    return merge_heads(out) @ attn.proj.weight.T + attn.proj.bias, w


def reference_cross(attn: CrossAttention, x: Tensor, memory: Tensor, memory_mask: Tensor | None):
    """Recomputes CrossAttention from its weights: .q, and .kv whose output is [k heads | v heads]."""
    h, hkv, hd = attn.num_heads, attn.num_kv_heads, attn.head_dim
    q = split_heads(x @ attn.q.weight.T + attn.q.bias, h)
    k, v = (memory @ attn.kv.weight.T + attn.kv.bias).split([hkv * hd, hkv * hd], dim=-1)
    out, w = naive_attention(attn.q_norm(q), attn.k_norm(split_heads(k, hkv)), split_heads(v, hkv), memory_mask)
    return merge_heads(out) @ attn.proj.weight.T + attn.proj.bias, w


def padding_mask(lengths: list[int], n: int) -> Tensor:
    return torch.arange(n)[None, :] < torch.tensor(lengths)[:, None]


def randomize(module: nn.Module) -> nn.Module:
    """Non-trivial weights and biases (default init leaves some biases at zero)."""
    with torch.no_grad():
        for p in module.parameters():
            p.normal_(0, 0.3)
    return module.eval()


# --------------------------------------------------------------------------- self-attention


@pytest.mark.parametrize("num_kv_heads", [1, 2, H])
@pytest.mark.parametrize("causal", [False, True], ids=["bidir", "causal"])
@pytest.mark.parametrize("masked", [False, True], ids=["nomask", "padmask"])
@pytest.mark.parametrize("rope", [False, True], ids=["norope", "rope"])
def test_self_attention_matches_naive(num_kv_heads, causal, masked, rope):
    torch.manual_seed(0)
    attn = randomize(SelfAttention(D, H, num_kv_heads, causal=causal, rope=RotaryEmbedding(HD) if rope else None))
    x = torch.randn(B, T, D)
    mask = padding_mask([T, 4, 1], T) if masked else None
    ref, _ = reference_self(attn, x, mask)
    with torch.no_grad():
        out = attn(x, mask)
        out_w = attn(x, mask, need_weights=True)
    assert out.weights is None
    assert out.out.shape == (B, T, D)
    real = mask if mask is not None else torch.ones(B, T, dtype=torch.bool)
    # Padded queries' outputs are unspecified; real queries must match exactly.
    torch.testing.assert_close(out.out[real], ref[real], atol=ATOL, rtol=0)
    torch.testing.assert_close(out_w.out[real], ref[real], atol=ATOL, rtol=0)
    if not causal:  # bidirectional padded queries still see every real key: defined, so compare all
        torch.testing.assert_close(out.out, ref, atol=ATOL, rtol=0)


def test_self_attention_explicit_positions_match_default():
    torch.manual_seed(0)
    attn = randomize(SelfAttention(D, H, 2, causal=True, rope=RotaryEmbedding(HD)))
    x = torch.randn(B, T, D)
    with torch.no_grad():
        default = attn(x).out
        explicit_1d = attn(x, positions=torch.arange(T)).out
        explicit_2d = attn(x, positions=torch.arange(T).expand(B, T)).out
        shifted = attn(x, positions=torch.arange(T) + 11).out
    torch.testing.assert_close(explicit_1d, default, atol=ATOL, rtol=0)
    torch.testing.assert_close(explicit_2d, default, atol=ATOL, rtol=0)
    # RoPE only sees relative offsets: shifting every position leaves attention unchanged ...
    torch.testing.assert_close(shifted, default, atol=ATOL, rtol=0)
    # ... and per-row positions really are used per row.
    per_row = torch.stack([torch.arange(T), torch.arange(T).flip(0), torch.arange(T)])
    with torch.no_grad():
        out = attn(x, positions=per_row).out
    ref1, _ = reference_self(attn, x[1:2], None, positions=torch.arange(T).flip(0))
    torch.testing.assert_close(out[1:2], ref1, atol=ATOL, rtol=0)
    torch.testing.assert_close(out[0], default[0], atol=ATOL, rtol=0)


def test_self_attention_qk_norm_matches_naive():
    torch.manual_seed(0)
    attn = randomize(SelfAttention(D, H, 2, qk_norm=lambda d: nn.LayerNorm(d)))
    assert isinstance(attn.q_norm, nn.LayerNorm) and attn.q_norm.normalized_shape == (HD,)
    x = torch.randn(B, T, D)
    mask = padding_mask([T, 3, 5], T)
    ref, _ = reference_self(attn, x, mask)
    with torch.no_grad():
        out = attn(x, mask).out
    torch.testing.assert_close(out, ref, atol=ATOL, rtol=0)


def test_self_attention_without_bias():
    torch.manual_seed(0)
    attn = SelfAttention(D, H, bias=False)
    assert attn.qkv.bias is None and attn.proj.bias is None
    assert attn.qkv.out_features == 3 * D


@pytest.mark.parametrize("num_kv_heads,expected", [(None, 3 * D), (H, 3 * D), (2, D + 2 * 2 * HD), (1, D + 2 * HD)])
def test_qkv_width_follows_kv_heads(num_kv_heads, expected):
    assert SelfAttention(D, H, num_kv_heads).qkv.out_features == expected
    assert CrossAttention(D, H, num_kv_heads).kv.out_features == expected - D


@pytest.mark.parametrize("num_kv_heads", [1, 2, H])
@pytest.mark.parametrize("causal", [False, True], ids=["bidir", "causal"])
def test_need_weights_rows_are_distributions_over_real_keys(num_kv_heads, causal):
    torch.manual_seed(1)
    attn = randomize(SelfAttention(D, H, num_kv_heads, causal=causal))
    x = torch.randn(B, T, D)
    mask = padding_mask([T, 4, 2], T)
    with torch.no_grad():
        fast = attn(x, mask)
        slow = attn(x, mask, need_weights=True)
    w = slow.weights
    assert w is not None and w.shape == (B, H, T, T)
    real_q = mask[:, None, :, None].expand_as(w)
    # Rows of real queries: zero on padded keys, sum to one. (A padded query's row is unspecified:
    # causal attention lets it see itself so that left padding cannot produce an all-masked row.)
    padded_key = ~mask[:, None, None, :].expand_as(w)
    assert torch.all(w[real_q & padded_key] == 0)
    sums = w.sum(-1)  # (B, H, T)
    torch.testing.assert_close(sums[mask[:, None, :].expand_as(sums)], torch.ones(int(mask.sum()) * H))
    if causal:
        future = torch.ones(T, T, dtype=torch.bool).triu(1)
        assert torch.all(w[real_q & future.expand_as(w)] == 0)
    torch.testing.assert_close(slow.out[mask], fast.out[mask], atol=ATOL, rtol=0)
    _, ref_w = reference_self(attn, x, mask)
    torch.testing.assert_close(w[real_q], ref_w.expand_as(w)[real_q], atol=ATOL, rtol=0)


def test_causal_without_padding_uses_same_weights_as_explicit_mask():
    torch.manual_seed(2)
    attn = randomize(SelfAttention(D, H, causal=True))
    x = torch.randn(B, T, D)
    all_real = torch.ones(B, T, dtype=torch.bool)
    with torch.no_grad():
        a = attn(x, need_weights=True)
        b = attn(x, all_real, need_weights=True)
        c = attn(x, all_real)
        d = attn(x)
    torch.testing.assert_close(a.weights, b.weights, atol=ATOL, rtol=0)
    assert torch.all(a.weights.triu(1) == 0)
    for o in (b.out, c.out, d.out):
        torch.testing.assert_close(o, a.out, atol=ATOL, rtol=0)


# --------------------------------------------------------------------------- cross-attention


@pytest.mark.parametrize("num_kv_heads", [1, 2, H])
@pytest.mark.parametrize("masked", [False, True], ids=["nomask", "padmask"])
@pytest.mark.parametrize("kv_dim", [None, 24])
def test_cross_attention_matches_naive(num_kv_heads, masked, kv_dim):
    torch.manual_seed(0)
    attn = randomize(CrossAttention(D, H, num_kv_heads, kv_dim=kv_dim))
    x = torch.randn(B, T, D)
    memory = torch.randn(B, S, kv_dim or D)
    mask = padding_mask([S, 2, 1], S) if masked else None
    ref, ref_w = reference_cross(attn, x, memory, mask)
    with torch.no_grad():
        fast = attn(x, memory, mask)
        slow = attn(x, memory, mask, need_weights=True)
    assert fast.weights is None and fast.out.shape == (B, T, D)
    torch.testing.assert_close(fast.out, ref, atol=ATOL, rtol=0)
    torch.testing.assert_close(slow.out, ref, atol=ATOL, rtol=0)
    w = slow.weights
    assert w.shape == (B, H, T, S)
    torch.testing.assert_close(w, ref_w.expand_as(w), atol=ATOL, rtol=0)
    torch.testing.assert_close(w.sum(-1), torch.ones(B, H, T))
    if mask is not None:
        assert torch.all(w.masked_select(~mask[:, None, None, :].expand_as(w)) == 0)


def test_cross_attention_static_cache_reuses_memory_projection():
    from mmformer.layers.kv_cache import StaticKV

    torch.manual_seed(0)
    attn = randomize(CrossAttention(D, H, 2))
    x, memory = torch.randn(B, T, D), torch.randn(B, S, D)
    mask = padding_mask([S, 3, 4], S)
    cache = StaticKV()
    with torch.no_grad():
        first = attn(x, memory, mask, cache=cache).out
        assert cache.k is not None and cache.k.shape == (B, 2, S, HD) and cache.v.shape == (B, 2, S, HD)
        # second call ignores the memory's values (only its shape is checked) and uses the cache
        second = attn(x, torch.zeros_like(memory), mask, cache=cache).out
    torch.testing.assert_close(second, first, atol=0, rtol=0)
    torch.testing.assert_close(first, reference_cross(attn, x, memory, mask)[0], atol=ATOL, rtol=0)


@pytest.mark.parametrize("num_kv_heads", [1, H])
@pytest.mark.parametrize("need_weights", [False, True])
def test_cross_attention_grouped_rows_equal_a_repeated_memory(num_kv_heads, need_weights):
    """Beam search's layout: g consecutive query rows share one memory row. Reading the memory once per group
    must give what repeating it per row gives, for every row (padding included), with or without the cache."""
    from mmformer.layers.kv_cache import StaticKV

    torch.manual_seed(0)
    g = 3
    attn = randomize(CrossAttention(D, H, num_kv_heads))
    x, memory = torch.randn(B * g, T, D), torch.randn(B, S, D)
    mask = padding_mask([S, 2, 4], S)
    with torch.no_grad():
        ref = attn(x, memory.repeat_interleave(g, 0), mask.repeat_interleave(g, 0), need_weights=need_weights)
        cache = StaticKV()
        grouped = attn(x, memory, mask, need_weights=need_weights, cache=cache)
        again = attn(x, memory, mask, need_weights=need_weights, cache=cache)
    assert cache.k.shape[0] == B  # the memory's keys are kept once per source, not per hypothesis
    for out in (grouped, again):
        torch.testing.assert_close(out.out, ref.out, atol=ATOL, rtol=0)
        if need_weights:
            assert out.weights.shape == (B * g, H, T, S)
            torch.testing.assert_close(out.weights, ref.weights, atol=ATOL, rtol=0)


def test_cross_attention_rows_that_do_not_divide_the_memory_are_refused():
    attn = CrossAttention(D, H)
    with pytest.raises(ValueError, match="5 query rows cannot share a memory of 2 rows"):
        attn(torch.randn(5, 1, D), torch.randn(2, 4, D))


# --------------------------------------------------------------------------- attend() itself


@pytest.mark.parametrize("need_weights", [False, True])
def test_attend_chunk_of_queries_is_bottom_right_causal(need_weights):
    """Queries that are the last t of s positions (chunked prefill) see keys 0 .. s - t + i."""
    torch.manual_seed(3)
    q = torch.randn(2, 4, 3, 8)
    k, v = torch.randn(2, 2, 6, 8), torch.randn(2, 2, 6, 8)
    out = attend(q, k, v, None, causal=True, need_weights=need_weights).out
    ref, _ = naive_attention(q, k, v, None, causal=True)
    torch.testing.assert_close(out, ref, atol=ATOL, rtol=0)
    mask = torch.tensor([[True] * 6, [False, True, False, True, True, True]])  # every query (3..5) is real
    out = attend(q, k, v, mask, causal=True, need_weights=need_weights).out
    ref, _ = naive_attention(q, k, v, mask, causal=True)
    torch.testing.assert_close(out, ref, atol=ATOL, rtol=0)


def test_attention_dropout_only_in_training():
    torch.manual_seed(4)
    attn = randomize(SelfAttention(D, H, attn_drop=0.5, proj_drop=0.5))
    x = torch.randn(B, T, D)
    with torch.no_grad():
        ref, _ = reference_self(attn, x, None)
        torch.testing.assert_close(attn(x).out, ref, atol=ATOL, rtol=0)
        attn.train()
        assert not torch.allclose(attn(x).out, ref, atol=1e-3)


# --------------------------------------------------------------------------- validation


@pytest.mark.parametrize("cls", [SelfAttention, CrossAttention])
def test_dim_not_divisible_by_heads(cls):
    with pytest.raises(ValueError, match=r"dim 30 .*num_heads 4"):
        cls(30, 4)


@pytest.mark.parametrize("cls", [SelfAttention, CrossAttention])
def test_heads_not_divisible_by_kv_heads(cls):
    with pytest.raises(ValueError, match=r"num_heads 6 .*num_kv_heads 4"):
        cls(48, 6, 4)


@pytest.mark.parametrize("heads,kv", [(0, None), (4, 0), (-2, None)])
def test_nonpositive_heads_rejected(heads, kv):
    with pytest.raises(ValueError):
        check_heads(32, heads, kv)


def test_check_heads_returns_layout():
    assert check_heads(32, 4, None) == (4, 8)
    assert check_heads(32, 4, 1) == (1, 8)


def test_self_attention_mask_shape_mismatch():
    attn = SelfAttention(D, H)
    x = torch.randn(2, 5, D)
    with pytest.raises(ValueError, match=r"\(2, 6\).*\(2, 5\)"):
        attn(x, torch.ones(2, 6, dtype=torch.bool))


def test_self_attention_non_bool_mask():
    attn = SelfAttention(D, H)
    x = torch.randn(2, 5, D)
    with pytest.raises(ValueError, match="bool.*torch.int64"):
        attn(x, torch.ones(2, 5, dtype=torch.long))
    with pytest.raises(ValueError, match="bool.*torch.float32"):
        attn(x, torch.ones(2, 5))


def test_cross_attention_memory_mask_mismatch():
    attn = CrossAttention(D, H)
    x, memory = torch.randn(2, 5, D), torch.randn(2, 4, D)
    with pytest.raises(ValueError, match=r"memory_mask.*\(2, 3\).*\(2, 4\)"):
        attn(x, memory, torch.ones(2, 3, dtype=torch.bool))
    with pytest.raises(ValueError, match=r"memory_mask.*bool"):
        attn(x, memory, torch.ones(2, 4, dtype=torch.int32))

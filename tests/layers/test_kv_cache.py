"""Incremental decoding with KV caches equals full recomputation; KVCache growth and beam search's row copies."""

from __future__ import annotations

import pytest
import torch

from mmformer.backbone import BackboneConfig, Decoder, Encoder
from mmformer.layers.kv_cache import DecoderCache, KVCache
from mmformer.tokenizers.base import TokenBatch

ATOL = 1e-5
B, T, S, D, DMEM = 3, 9, 6, 32, 24


def make_decoder(num_kv_heads=None, rope=False, **kw) -> Decoder:
    torch.manual_seed(0)
    cfg = BackboneConfig(dim=D, depth=2, num_heads=4, num_kv_heads=num_kv_heads, rope=rope, memory_dim=DMEM, **kw)
    dec = Decoder(cfg).eval()
    with torch.no_grad():  # biases and norm affines away from their zero/one init
        for p in dec.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return dec


def inputs(seed: int = 1):
    torch.manual_seed(seed)
    x = torch.randn(B, T, D)
    memory = torch.randn(B, S, DMEM)
    memory_mask = torch.arange(S)[None] < torch.tensor([S, 3, 1])[:, None]
    return x, memory, memory_mask


CASES = [
    pytest.param(dict(), id="mha"),
    pytest.param(dict(rope=True), id="rope"),
    pytest.param(dict(num_kv_heads=2), id="gqa"),
    pytest.param(dict(num_kv_heads=1, rope=True), id="mqa-rope"),
    pytest.param(dict(num_kv_heads=2, rope=True, qk_norm="rmsnorm", mlp="swiglu", norm="rmsnorm"), id="llama"),
    pytest.param(dict(norm_position="post"), id="postnorm"),
]


@pytest.mark.parametrize("kw", CASES)
def test_token_by_token_equals_full_pass(kw):
    dec = make_decoder(**kw)
    x, memory, memory_mask = inputs()
    with torch.no_grad():
        full = dec(TokenBatch(x), memory, memory_mask).hidden
        cache = dec.new_cache()
        for t in range(T):
            step = dec(TokenBatch(x[:, t : t + 1]), memory, memory_mask, cache=cache).hidden
            assert step.shape == (B, 1, D)
            torch.testing.assert_close(step[:, 0], full[:, t], atol=ATOL, rtol=0, msg=f"position {t}")
            assert cache.length == t + 1
    # the full pass is genuinely causal: changing a later token leaves earlier outputs alone
    x2 = x.clone()
    x2[:, 5:] = torch.randn(B, T - 5, D)
    with torch.no_grad():
        full2 = dec(TokenBatch(x2), memory, memory_mask).hidden
    torch.testing.assert_close(full2[:, :5], full[:, :5], atol=ATOL, rtol=0)
    assert not torch.allclose(full2[:, 5:], full[:, 5:], atol=1e-3)


@pytest.mark.parametrize("kw", CASES[:4])
@pytest.mark.parametrize("chunks", [(3, 3, 1, 1, 1), (1, 4, 4), (5, 2, 2)])
def test_chunked_prefill_equals_full_pass(kw, chunks):
    dec = make_decoder(**kw)
    x, memory, memory_mask = inputs()
    assert sum(chunks) == T
    with torch.no_grad():
        full = dec(TokenBatch(x), memory, memory_mask).hidden
        cache = dec.new_cache()
        start = 0
        for n in chunks:
            out = dec(TokenBatch(x[:, start : start + n]), memory, memory_mask, cache=cache).hidden
            torch.testing.assert_close(out, full[:, start : start + n], atol=ATOL, rtol=0, msg=f"chunk at {start}")
            start += n
    assert cache.length == T


@pytest.mark.parametrize("kw", CASES[:3])
def test_cache_growth_past_capacity(kw):
    dec = make_decoder(**kw)
    x, memory, memory_mask = inputs()
    with torch.no_grad():
        full = dec(TokenBatch(x), memory, memory_mask).hidden
        cache = dec.new_cache(capacity=2)
        steps = [dec(TokenBatch(x[:, t : t + 1]), memory, memory_mask, cache=cache).hidden for t in range(T)]
    torch.testing.assert_close(torch.cat(steps, 1), full, atol=ATOL, rtol=0)
    assert cache.length == T
    assert all(layer.self_kv.capacity == 2 for layer in cache.layers)


def test_decoding_with_target_padding_mask():
    """Step masks cover only the new positions; the cache keeps the earlier ones."""
    dec = make_decoder(rope=True, num_kv_heads=2)
    x, memory, memory_mask = inputs()
    tgt_mask = torch.ones(B, T, dtype=torch.bool)
    tgt_mask[1, 2] = False  # a hole in the middle
    tgt_mask[2, 6:] = False  # right padding
    with torch.no_grad():
        full = dec(TokenBatch(x, tgt_mask), memory, memory_mask).hidden
        cache = dec.new_cache(capacity=2)
        outs = [
            dec(TokenBatch(x[:, t : t + 1], tgt_mask[:, t : t + 1]), memory, memory_mask, cache=cache).hidden
            for t in range(T)
        ]
    torch.testing.assert_close(torch.cat(outs, 1)[tgt_mask], full[tgt_mask], atol=ATOL, rtol=0)


def test_decoding_with_left_padding_stays_finite():
    """Left-padded steps have no real key at all; they must not poison later real tokens."""
    dec = make_decoder(num_kv_heads=2)
    x, memory, memory_mask = inputs()
    tgt_mask = torch.ones(B, T, dtype=torch.bool)
    tgt_mask[1, :3] = False
    tgt_mask[2, :1] = False
    with torch.no_grad():
        full = dec(TokenBatch(x, tgt_mask), memory, memory_mask).hidden
        cache = dec.new_cache()
        outs = [
            dec(TokenBatch(x[:, t : t + 1], tgt_mask[:, t : t + 1]), memory, memory_mask, cache=cache).hidden
            for t in range(T)
        ]
    steps = torch.cat(outs, 1)
    assert torch.isfinite(full).all() and torch.isfinite(steps[tgt_mask]).all()
    torch.testing.assert_close(steps[tgt_mask], full[tgt_mask], atol=ATOL, rtol=0)


def test_causal_encoder_with_cache_equals_full_pass():
    torch.manual_seed(0)
    enc = Encoder(BackboneConfig(dim=D, depth=2, num_heads=4, num_kv_heads=2, rope=True, causal=True)).eval()
    x = torch.randn(B, T, D)
    with torch.no_grad():
        full = enc(TokenBatch(x)).hidden
        cache = enc.new_cache()
        first = enc(TokenBatch(x[:, :4]), cache=cache).hidden
        rest = [enc(TokenBatch(x[:, t : t + 1]), cache=cache).hidden for t in range(4, T)]
    torch.testing.assert_close(torch.cat([first, *rest], 1), full, atol=ATOL, rtol=0)


def test_bidirectional_encoder_rejects_cache():
    enc = Encoder(BackboneConfig(dim=D, depth=1, num_heads=4))
    with pytest.raises(ValueError, match="causal"):
        enc(TokenBatch(torch.randn(1, 2, D)), cache=enc.new_cache())


def test_decoder_cache_copy_rows_follows_beams():
    """Beam search: a beam duplicated into a dropped one copies its self-attention rows, the (shared) memory
    stays; equals recomputation."""
    dec = make_decoder(num_kv_heads=2, rope=True)
    torch.manual_seed(2)
    x = torch.randn(B, T, D)
    memory = torch.randn(1, S, DMEM).expand(B, S, DMEM)  # beams of one source share memory rows
    memory_mask = torch.tensor([[True] * 4 + [False] * (S - 4)]).expand(B, S)
    index = torch.tensor([0, 2, 2])  # row 1 dropped, row 2 duplicated into it
    with torch.no_grad():
        cache = dec.new_cache(capacity=2)
        for t in range(4):
            dec(TokenBatch(x[:, t : t + 1]), memory, memory_mask, cache=cache)
        cache.copy_rows(torch.tensor([2]), torch.tensor([1]))
        steps = [dec(TokenBatch(x[index, t : t + 1]), memory, memory_mask, cache=cache).hidden for t in range(4, T)]
        full = dec(TokenBatch(x[index]), memory, memory_mask).hidden
    torch.testing.assert_close(torch.cat(steps, 1), full[:, 4:], atol=ATOL, rtol=0)


# --------------------------------------------------------------------------- KVCache itself


def kv(b=2, h=2, t=1, d=4):
    return torch.randn(b, h, t, d), torch.randn(b, h, t, d)


def test_kv_cache_append_grows_and_keeps_contents():
    torch.manual_seed(0)
    cache = KVCache(capacity=2)
    ks, vs = [], []
    for t in (1, 1, 3, 1, 5):  # crosses capacity 2 → 4 → 8 → 16
        k, v = kv(t=t)
        ks.append(k)
        vs.append(v)
        k_all, v_all, mask = cache.append(k, v)
        assert mask is None
        assert cache.length == sum(x.shape[2] for x in ks)
        torch.testing.assert_close(k_all, torch.cat(ks, 2), atol=0, rtol=0)
        torch.testing.assert_close(v_all, torch.cat(vs, 2), atol=0, rtol=0)
    assert cache.length == 11


def test_kv_cache_mask_bookkeeping():
    torch.manual_seed(0)
    cache = KVCache(capacity=2)
    cache.append(*kv(t=2))  # no mask: all real
    _, _, mask = cache.append(*kv(t=1), torch.tensor([[False], [True]]))
    assert mask.tolist() == [[True, True, False], [True, True, True]]
    _, _, mask = cache.append(*kv(t=2))  # later unmasked steps are real
    assert mask.tolist() == [[True, True, False, True, True], [True, True, True, True, True]]
    _, _, mask = cache.append(*kv(t=1), torch.tensor([[True], [False]]))
    assert mask.shape == (2, 6) and mask[:, -1].tolist() == [True, False]


@pytest.mark.parametrize("static", [False, True])
def test_kv_cache_copy_rows_overwrites_only_the_target_rows(static):
    """Beam search's cheap reorder: rows ``dst`` become copies of rows ``src``; every other row is untouched."""
    torch.manual_seed(0)
    cache = DecoderCache(1, capacity=6, static=static).layers[0].self_kv
    ks, vs = zip(*(kv(b=4, t=1) for _ in range(3)))
    for k, v in zip(ks, vs):
        cache.append(k, v)
        if static:
            cache.position.add_(1)
            cache.length += 1
    k_all, v_all = torch.cat(ks, 2), torch.cat(vs, 2)
    cache.copy_rows(torch.tensor([0, 3]), torch.tensor([1, 2]))
    index = torch.tensor([0, 0, 3, 3])  # rows 1 and 2 now continue rows 0 and 3
    torch.testing.assert_close(cache._k[:, :, :3], k_all[index], atol=0, rtol=0)
    torch.testing.assert_close(cache._v[:, :, :3], v_all[index], atol=0, rtol=0)


def test_kv_cache_copy_rows_before_any_append_is_noop():
    cache = KVCache()
    cache.copy_rows(torch.tensor([0]), torch.tensor([1]))
    assert cache.length == 0


def test_decoder_cache_layers_and_length():
    cache = DecoderCache(3, capacity=5)
    assert len(cache.layers) == 3 and cache.length == 0
    assert all(layer.self_kv.capacity == 5 for layer in cache.layers)
    assert len({id(layer.self_kv) for layer in cache.layers}) == 3  # not shared
    assert len({id(layer.cross_kv) for layer in cache.layers}) == 3

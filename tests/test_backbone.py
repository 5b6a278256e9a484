"""Backbone: parity with timm's ViT blocks and torch.nn.TransformerEncoder, padding invariance,
drop path, gradients and input validation."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from mmformer.backbone import BackboneConfig, Block, Decoder, Encoder
from mmformer.layers.attention import CrossAttention, SelfAttention
from mmformer.layers.mlp import Mlp
from mmformer.tokenizers.base import TokenBatch

ATOL = 1e-5


def n_params(m: nn.Module) -> int:
    return sum(p.numel() for p in m.parameters())


def jitter(module: nn.Module, scale: float = 0.05) -> nn.Module:
    """Moves every parameter (zero biases, unit norm weights) to a non-trivial value."""
    with torch.no_grad():
        for p in module.parameters():
            p.add_(scale * torch.randn_like(p))
    return module


# --------------------------------------------------------------------------- parity: timm ViT-S


def test_vit_s_parity_with_timm():
    from timm.models.vision_transformer import Block as TimmBlock

    torch.manual_seed(0)
    depth, dim, heads = 12, 384, 6
    ref = nn.Sequential(
        *[TimmBlock(dim, heads, mlp_ratio=4, qkv_bias=True) for _ in range(depth)], nn.LayerNorm(dim, eps=1e-6)
    ).eval()
    jitter(ref, 0.02)
    enc = Encoder(BackboneConfig(dim=dim, depth=depth, num_heads=heads, norm_eps=1e-6)).eval()
    assert n_params(enc) == n_params(ref)

    names = ["norm1", "attn.qkv", "attn.proj", "norm2", "mlp.fc1", "mlp.fc2"]
    mapping = {f"blocks.{i}.{n}.{p}": f"{i}.{n}.{p}" for i in range(depth) for n in names for p in ("weight", "bias")}
    mapping.update({"norm.weight": f"{depth}.weight", "norm.bias": f"{depth}.bias"})
    ref_sd = ref.state_dict()
    assert set(mapping) == set(enc.state_dict())  # every mmformer weight has a timm counterpart
    assert set(mapping.values()) == set(ref_sd)  # ... and every timm weight is used
    enc.load_state_dict({ours: ref_sd[theirs] for ours, theirs in mapping.items()}, strict=True)

    x = torch.randn(2, 197, dim)
    with torch.no_grad():
        expected = ref(x)
        got = enc(TokenBatch(x)).hidden
    torch.testing.assert_close(got, expected, atol=ATOL, rtol=0)


# --------------------------------------------------------------------------- parity: torch.nn.TransformerEncoder


def copy_to_torch(enc: Encoder, ref: nn.TransformerEncoder) -> None:
    with torch.no_grad():
        for ours, theirs in zip(enc.blocks, ref.layers):
            theirs.self_attn.in_proj_weight.copy_(ours.attn.qkv.weight)
            theirs.self_attn.in_proj_bias.copy_(ours.attn.qkv.bias)
            theirs.self_attn.out_proj.weight.copy_(ours.attn.proj.weight)
            theirs.self_attn.out_proj.bias.copy_(ours.attn.proj.bias)
            theirs.linear1.load_state_dict(ours.mlp.fc1.state_dict())
            theirs.linear2.load_state_dict(ours.mlp.fc2.state_dict())
            theirs.norm1.load_state_dict(ours.norm1.state_dict())
            theirs.norm2.load_state_dict(ours.norm2.state_dict())
        if ref.norm is not None:
            ref.norm.load_state_dict(enc.norm.state_dict())


@pytest.mark.parametrize("norm_position", ["post", "pre"])
@pytest.mark.parametrize("eps", [1e-5, 1e-6])
def test_parity_with_torch_transformer_encoder(norm_position, eps):
    torch.manual_seed(0)
    dim, heads, depth, ff = 32, 4, 3, 64
    cfg = BackboneConfig(dim=dim, depth=depth, num_heads=heads, mlp_ratio=ff / dim, norm_eps=eps,
                         norm_position=norm_position)
    enc = jitter(Encoder(cfg)).eval()
    layer = nn.TransformerEncoderLayer(dim, heads, ff, dropout=0.0, activation="gelu", layer_norm_eps=eps,
                                       batch_first=True, norm_first=norm_position == "pre")
    final = nn.LayerNorm(dim, eps=eps) if norm_position == "pre" else None
    ref = nn.TransformerEncoder(layer, depth, norm=final, enable_nested_tensor=False).eval()
    if norm_position == "post":
        assert isinstance(enc.norm, nn.Identity)
    assert n_params(enc) == n_params(ref)
    copy_to_torch(enc, ref)

    x = torch.randn(3, 10, dim)
    mask = torch.arange(10)[None] < torch.tensor([10, 6, 3])[:, None]  # True = real (mmformer)
    with torch.no_grad():
        got_full = enc(TokenBatch(x)).hidden
        exp_full = ref(x)
        got = enc(TokenBatch(x, mask)).hidden
        exp = ref(x, src_key_padding_mask=~mask)  # torch: True = pad
    torch.testing.assert_close(got_full, exp_full, atol=ATOL, rtol=0)
    torch.testing.assert_close(got[mask], exp[mask], atol=ATOL, rtol=0)


def test_causal_parity_with_torch_transformer_encoder():
    torch.manual_seed(0)
    dim, heads, depth = 32, 4, 2
    enc = jitter(Encoder(BackboneConfig(dim=dim, depth=depth, num_heads=heads, norm_eps=1e-5, causal=True))).eval()
    layer = nn.TransformerEncoderLayer(dim, heads, 4 * dim, dropout=0.0, activation="gelu", batch_first=True,
                                       norm_first=True)
    ref = nn.TransformerEncoder(layer, depth, norm=nn.LayerNorm(dim), enable_nested_tensor=False).eval()
    copy_to_torch(enc, ref)
    x = torch.randn(2, 8, dim)
    with torch.no_grad():
        got = enc(TokenBatch(x)).hidden
        exp = ref(x, mask=nn.Transformer.generate_square_subsequent_mask(8), is_causal=True)
    torch.testing.assert_close(got, exp, atol=ATOL, rtol=0)


# --------------------------------------------------------------------------- padding invariance

ENCODER_CASES = [
    pytest.param(dict(), id="bidir"),
    pytest.param(dict(causal=True), id="causal"),
    pytest.param(dict(norm_position="post"), id="bidir-post"),
    pytest.param(dict(causal=True, rope=True, num_kv_heads=2), id="causal-rope-gqa"),
    pytest.param(dict(rope=True, num_kv_heads=1, mlp="swiglu", norm="rmsnorm", qk_norm="rmsnorm"), id="bidir-llama"),
]


@pytest.mark.parametrize("kw", ENCODER_CASES)
def test_encoder_padding_invariance(kw):
    torch.manual_seed(0)
    enc = jitter(Encoder(BackboneConfig(dim=32, depth=2, num_heads=4, **kw))).eval()
    b, n, pad = 3, 6, 5
    x = torch.randn(b, n, 32)
    mask = torch.arange(n)[None] < torch.tensor([n, 4, 1])[:, None]
    garbage = 100 * torch.randn(b, pad, 32)
    x_pad = torch.cat([x, garbage], 1)
    mask_pad = torch.cat([mask, torch.zeros(b, pad, dtype=torch.bool)], 1)
    with torch.no_grad():
        base = enc(TokenBatch(x, mask)).hidden
        padded = enc(TokenBatch(x_pad, mask_pad)).hidden
        unmasked = enc(TokenBatch(x)).hidden
        x_pad2 = x_pad.clone()
        x_pad2[~mask_pad] = torch.randn(int((~mask_pad).sum()), 32)  # different garbage, same padding
        padded2 = enc(TokenBatch(x_pad2, mask_pad)).hidden
    assert torch.isfinite(padded).all()
    torch.testing.assert_close(padded[:, :n][mask], base[mask], atol=ATOL, rtol=0)
    torch.testing.assert_close(padded2[mask_pad], padded[mask_pad], atol=ATOL, rtol=0)
    # a fully real row equals the run without any mask
    torch.testing.assert_close(padded[0, :n], unmasked[0], atol=ATOL, rtol=0)
    # and the mask matters: without it the garbage reaches real tokens (bidirectional only)
    if not kw.get("causal"):
        with torch.no_grad():
            leaky = enc(TokenBatch(x_pad)).hidden
        assert not torch.allclose(leaky[0, :n], base[0], atol=1e-3)


@pytest.mark.parametrize("rope", [False, True], ids=["norope", "rope"])
def test_causal_encoder_left_padding_invariance(rope):
    """Left padding (decoder-only prompts): padded queries see no real key, yet nothing turns NaN and
    the real tokens are unchanged. With RoPE the real tokens keep their positions via batch.positions."""
    torch.manual_seed(0)
    enc = jitter(Encoder(BackboneConfig(dim=32, depth=3, num_heads=4, causal=True, rope=rope))).eval()
    b, n, pad = 2, 5, 3
    x = torch.randn(b, n, 32)
    x_pad = torch.cat([100 * torch.randn(b, pad, 32), x], 1)
    mask_pad = torch.cat([torch.zeros(b, pad, dtype=torch.bool), torch.ones(b, n, dtype=torch.bool)], 1)
    positions = (torch.arange(n + pad) - pad).clamp(min=0)
    with torch.no_grad():
        base = enc(TokenBatch(x)).hidden
        padded = enc(TokenBatch(x_pad, mask_pad, positions=positions if rope else None)).hidden
    assert torch.isfinite(padded).all()
    torch.testing.assert_close(padded[:, pad:], base, atol=ATOL, rtol=0)


@pytest.mark.parametrize("kw", [dict(), dict(rope=True, num_kv_heads=2), dict(norm_position="post")])
def test_decoder_padding_invariance(kw):
    torch.manual_seed(0)
    dec = jitter(Decoder(BackboneConfig(dim=32, depth=2, num_heads=4, memory_dim=16, **kw))).eval()
    b, t, s, pad = 3, 5, 4, 3
    x = torch.randn(b, t, 32)
    tgt_mask = torch.arange(t)[None] < torch.tensor([t, 3, 2])[:, None]
    memory = torch.randn(b, s, 16)
    mem_mask = torch.arange(s)[None] < torch.tensor([s, 2, 1])[:, None]
    memory_pad = torch.cat([memory, 100 * torch.randn(b, pad, 16)], 1)
    mem_mask_pad = torch.cat([mem_mask, torch.zeros(b, pad, dtype=torch.bool)], 1)
    x_pad = torch.cat([x, 100 * torch.randn(b, pad, 32)], 1)
    tgt_mask_pad = torch.cat([tgt_mask, torch.zeros(b, pad, dtype=torch.bool)], 1)
    with torch.no_grad():
        base = dec(TokenBatch(x, tgt_mask), memory, mem_mask).hidden
        padded_mem = dec(TokenBatch(x, tgt_mask), memory_pad, mem_mask_pad).hidden
        padded_both = dec(TokenBatch(x_pad, tgt_mask_pad), memory_pad, mem_mask_pad).hidden
        leaky = dec(TokenBatch(x, tgt_mask), memory_pad).hidden
    torch.testing.assert_close(padded_mem[tgt_mask], base[tgt_mask], atol=ATOL, rtol=0)
    torch.testing.assert_close(padded_both[:, :t][tgt_mask], base[tgt_mask], atol=ATOL, rtol=0)
    assert not torch.allclose(leaky[tgt_mask], base[tgt_mask], atol=1e-3)


# --------------------------------------------------------------------------- structure


def test_post_norm_encoder_has_identity_final_norm():
    enc = Encoder(BackboneConfig(dim=16, depth=2, num_heads=2, norm_position="post"))
    assert isinstance(enc.norm, nn.Identity)
    pre = Encoder(BackboneConfig(dim=16, depth=2, num_heads=2, norm_eps=1e-5))
    assert isinstance(pre.norm, nn.LayerNorm) and pre.norm.eps == 1e-5
    assert isinstance(pre.blocks[0].norm1, nn.LayerNorm) and pre.blocks[0].norm1.eps == 1e-5
    rms = Encoder(BackboneConfig(dim=16, depth=1, num_heads=2, norm="rmsnorm"))
    assert isinstance(rms.norm, nn.RMSNorm) and isinstance(rms.blocks[0].norm2, nn.RMSNorm)


def test_post_norm_block_math():
    torch.manual_seed(0)
    dim = 16
    block = Block(dim, SelfAttention(dim, 2), Mlp(dim, 32), nn.LayerNorm, norm_position="post").eval()
    jitter(block)
    x = torch.randn(2, 3, dim)
    with torch.no_grad():
        h = block.norm1(x + block.attn(x).out)
        expected = block.norm2(h + block.mlp(h))
        torch.testing.assert_close(block(x).hidden, expected, atol=ATOL, rtol=0)
        block.prenorm = True
        h = x + block.attn(block.norm1(x)).out
        expected = h + block.mlp(block.norm2(h))
        torch.testing.assert_close(block(x).hidden, expected, atol=ATOL, rtol=0)


@pytest.mark.parametrize("norm_position", ["post", "pre"])
def test_cross_attention_block_math_and_weights(norm_position):
    """Self-attention, cross-attention and MLP branches in order, with both weight maps returned."""
    torch.manual_seed(0)
    dim, mem_dim = 16, 8
    block = Block(dim, SelfAttention(dim, 2, causal=True), Mlp(dim, 32), nn.LayerNorm,
                  CrossAttention(dim, 2, kv_dim=mem_dim), norm_position=norm_position).eval()
    jitter(block)
    x, memory = torch.randn(2, 3, dim), torch.randn(2, 4, mem_dim)
    mask, memory_mask = torch.tensor([[True, True, False]] * 2), torch.tensor([[True] * 4, [True, True, False, False]])
    with torch.no_grad():
        out = block(x, mask, memory=memory, memory_mask=memory_mask, need_weights=True)
        if norm_position == "post":
            sa = block.attn(x, mask, need_weights=True)
            h = block.norm1(x + sa.out)
            ca = block.cross_attn(h, memory, memory_mask, need_weights=True)
            h = block.norm_cross(h + ca.out)
            expected = block.norm2(h + block.mlp(h))
        else:
            sa = block.attn(block.norm1(x), mask, need_weights=True)
            h = x + sa.out
            ca = block.cross_attn(block.norm_cross(h), memory, memory_mask, need_weights=True)
            h = h + ca.out
            expected = h + block.mlp(block.norm2(h))
        torch.testing.assert_close(out.hidden, expected, atol=ATOL, rtol=0)
        assert out.self_weights.shape == (2, 2, 3, 3) and out.cross_weights.shape == (2, 2, 3, 4)
        torch.testing.assert_close(out.self_weights, sa.weights, atol=ATOL, rtol=0)
        torch.testing.assert_close(out.cross_weights, ca.weights, atol=ATOL, rtol=0)
        assert torch.all(out.cross_weights[1, :, :, 2:] == 0)  # masked memory gets no attention
        plain = block(x, mask, memory=memory, memory_mask=memory_mask)
        assert plain.self_weights is None and plain.cross_weights is None
        torch.testing.assert_close(plain.hidden, out.hidden, atol=ATOL, rtol=0)
    keys = {k.split(".")[0] for k in block.state_dict()}
    assert keys == {"norm1", "attn", "norm_cross", "cross_attn", "norm2", "mlp"}


def test_decoder_structure_and_weights_output():
    torch.manual_seed(0)
    dec = Decoder(BackboneConfig(dim=16, depth=3, num_heads=2, num_kv_heads=1, memory_dim=8, causal=False))
    assert dec.causal and all(b.attn.causal for b in dec.blocks)
    assert all(b.cross_attn is not None and b.cross_attn.kv.in_features == 8 for b in dec.blocks)
    x, memory = torch.randn(2, 4, 16), torch.randn(2, 5, 8)
    mask = torch.tensor([[True] * 4, [True, True, False, False]])
    out = dec(TokenBatch(x, mask), memory, need_weights=True)
    assert out.mask is mask
    assert len(out.attentions) == 3 and all(w.shape == (2, 2, 4, 4) for w in out.attentions)
    assert len(out.cross_attentions) == 3 and all(w.shape == (2, 2, 4, 5) for w in out.cross_attentions)
    assert all(torch.all(w.triu(1) == 0) for w in out.attentions)
    plain = dec(TokenBatch(x, mask), memory)
    assert plain.attentions is None and plain.cross_attentions is None
    torch.testing.assert_close(plain.hidden[mask], out.hidden[mask], atol=ATOL, rtol=0)


def test_encoder_weights_output_and_no_cross():
    enc = Encoder(BackboneConfig(dim=16, depth=2, num_heads=4))
    assert all(b.cross_attn is None and b.norm_cross is None for b in enc.blocks)
    out = enc(TokenBatch(torch.randn(1, 3, 16)), need_weights=True)
    assert len(out.attentions) == 2 and out.attentions[0].shape == (1, 4, 3, 3)
    assert out.cross_attentions is None and out.mask is None


def test_one_encoder_serves_several_sequence_lengths():
    torch.manual_seed(0)
    enc = Encoder(BackboneConfig(dim=16, depth=1, num_heads=2)).eval()
    for n in (1, 5, 17):
        assert enc(TokenBatch(torch.randn(2, n, 16))).hidden.shape == (2, n, 16)


# --------------------------------------------------------------------------- drop path


def test_drop_path_only_active_in_training():
    torch.manual_seed(0)
    cfg = dict(dim=16, depth=3, num_heads=2)
    enc = Encoder(BackboneConfig(**cfg, drop_path=0.5))
    plain = Encoder(BackboneConfig(**cfg))
    plain.load_state_dict(enc.state_dict())
    assert isinstance(enc.blocks[0].drop_path, nn.Identity)  # linear schedule from 0
    assert enc.blocks[1].drop_path.drop_prob == pytest.approx(0.25)
    assert enc.blocks[2].drop_path.drop_prob == pytest.approx(0.5)
    x = TokenBatch(torch.randn(16, 4, 16))
    enc.eval()
    plain.eval()
    with torch.no_grad():
        torch.testing.assert_close(enc(x).hidden, plain(x).hidden, atol=0, rtol=0)
        enc.train()
        a, b = enc(x).hidden, enc(x).hidden
        ref = plain(x).hidden
    assert not torch.allclose(a, ref, atol=1e-4)
    assert not torch.allclose(a, b, atol=1e-4)


# --------------------------------------------------------------------------- gradients


@pytest.mark.parametrize("kw", [dict(), dict(rope=True, num_kv_heads=2, qk_norm="rmsnorm", mlp="swiglu"),
                                dict(norm_position="post")])
def test_gradients_reach_every_parameter(kw):
    torch.manual_seed(0)
    cfg = BackboneConfig(dim=16, depth=2, num_heads=4, memory_dim=12, **kw)
    enc, dec = Encoder(cfg), Decoder(cfg)
    x = torch.randn(2, 5, 16, requires_grad=True)
    mask = torch.tensor([[True] * 5, [True] * 3 + [False] * 2])
    memory = enc(TokenBatch(torch.randn(2, 6, 16))).hidden @ torch.randn(16, 12)
    out = dec(TokenBatch(x, mask), memory, torch.tensor([[True] * 6, [True] * 4 + [False] * 2])).hidden
    (out[mask] * torch.randn_like(out[mask])).sum().backward()
    for model in (enc, dec):
        for name, p in model.named_parameters():
            assert p.grad is not None, f"{type(model).__name__}.{name} got no gradient"
            assert p.grad.abs().sum() > 0, f"{type(model).__name__}.{name} got a zero gradient"
    assert x.grad is not None and torch.isfinite(x.grad).all()
    assert torch.all(x.grad[1, 3:] == 0)  # padded inputs influence nothing that counts


# --------------------------------------------------------------------------- validation


def test_dim_not_divisible_by_heads():
    with pytest.raises(ValueError, match=r"dim 30 .*num_heads 4"):
        Encoder(BackboneConfig(dim=30, depth=1, num_heads=4))


def test_dim_not_divisible_by_heads_with_rope():
    """The real mistake (30 / 4) must be named, not a consequence of it (odd RoPE head dim 7)."""
    with pytest.raises(ValueError, match=r"dim 30 .*num_heads 4"):
        Encoder(BackboneConfig(dim=30, depth=1, num_heads=4, rope=True))


def test_heads_not_divisible_by_kv_heads():
    with pytest.raises(ValueError, match=r"num_heads 6 .*num_kv_heads 4"):
        Decoder(BackboneConfig(dim=48, depth=1, num_heads=6, num_kv_heads=4))


def test_bad_config_values():
    with pytest.raises(ValueError, match="depth"):
        Encoder(BackboneConfig(dim=16, depth=0, num_heads=2))
    with pytest.raises(ValueError, match="norm_position.*'middle'"):
        Encoder(BackboneConfig(dim=16, depth=1, num_heads=2, norm_position="middle"))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="unknown norm 'batchnorm'"):
        Encoder(BackboneConfig(dim=16, depth=1, num_heads=2, norm="batchnorm"))
    with pytest.raises(ValueError, match="unknown mlp 'relu'"):
        Encoder(BackboneConfig(dim=16, depth=1, num_heads=2, mlp="relu"))


def test_token_width_mismatch_names_sizes():
    enc = Encoder(BackboneConfig(dim=32, depth=1, num_heads=4))
    with pytest.raises(ValueError, match="width 16.*dim is 32"):
        enc(TokenBatch(torch.randn(1, 3, 16)))


def test_backbone_takes_only_token_batches():
    enc = Encoder(BackboneConfig(dim=16, depth=1, num_heads=2))
    with pytest.raises(TypeError, match="TokenBatch.*Tensor"):
        enc(torch.randn(1, 3, 16))  # type: ignore[arg-type]


def test_mask_errors_via_token_batch():
    with pytest.raises(ValueError, match=r"\(2, 4\).*\(2, 3\)"):
        TokenBatch(torch.randn(2, 3, 16), torch.ones(2, 4, dtype=torch.bool))
    with pytest.raises(ValueError, match="bool.*torch.int64"):
        TokenBatch(torch.randn(2, 3, 16), torch.ones(2, 3, dtype=torch.long))


def test_decoder_memory_errors():
    dec = Decoder(BackboneConfig(dim=16, depth=1, num_heads=2))
    batch = TokenBatch(torch.randn(2, 3, 16))
    with pytest.raises(ValueError, match="memory"):
        dec(batch, None)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"memory_mask.*\(2, 5\).*\(2, 4\)"):
        dec(batch, torch.randn(2, 4, 16), torch.ones(2, 5, dtype=torch.bool))
    with pytest.raises(ValueError, match=r"memory_mask.*bool"):
        dec(batch, torch.randn(2, 4, 16), torch.ones(2, 4))

"""ImagePatchTokenizer: contract, token layout, position resizing, patch dropout and input errors."""

from __future__ import annotations

from typing import Any

import pytest
import torch

import mmformer.tokenizers.image as image_module
from mmformer.layers.positions import resize_2d, sincos_2d
from mmformer.testing import check_tokenizer
from mmformer.tokenizers.image import ImagePatchTokenizer

DIM = 32


def _tok(**kw: Any) -> ImagePatchTokenizer:
    torch.manual_seed(0)
    args: dict[str, Any] = dict(image_size=28, patch_size=4, in_chans=1)
    return ImagePatchTokenizer(DIM, **(args | kw)).eval()


def _images(*shape: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed))


CONFIGS = {
    "cls_learned": dict(cls_token=True, pos_embed="learned"),
    "nocls_learned": dict(cls_token=False, pos_embed="learned"),
    "cls_sincos": dict(cls_token=True, pos_embed="sincos"),
    "nocls_sincos": dict(cls_token=False, pos_embed="sincos"),
    "stem_cls_learned": dict(cls_token=True, pos_embed="learned", stem_channels=[16, 32]),
    "stem_nocls_sincos": dict(cls_token=False, pos_embed="sincos", stem_channels=[16, 32]),
}


@pytest.mark.parametrize("name", list(CONFIGS))
def test_contract_token_count_and_grid(name: str) -> None:
    cfg = CONFIGS[name]
    tok = _tok(**cfg)
    out = check_tokenizer(tok)
    prefix = int(cfg["cls_token"])
    assert out.tokens.shape == (2, prefix + 7 * 7, DIM)
    assert out.grid == (7, 7) and out.num_prefix_tokens == prefix
    assert out.mask is None  # images carry no padding
    if cfg.get("stem_channels"):
        assert len(tok.stem) == 3 * len(cfg["stem_channels"]) and tok.proj.kernel_size == (1, 1)
    else:
        assert tok.proj.kernel_size == (4, 4)


def test_contract_check_leaves_batchnorm_stats_dtype_and_mode_alone() -> None:
    tok = _tok(stem_channels=[16, 32]).double().train()
    before = {n: b.clone() for n, b in tok.named_buffers()}
    check_tokenizer(tok)
    assert tok.training and tok.proj.weight.dtype == torch.float64
    for n, b in tok.named_buffers():
        assert torch.equal(b, before[n]), n


def test_tokens_are_patches_plus_positions() -> None:
    """Row-major patch order, CLS first; the table at the trained size is used as is (no resize)."""
    tok = _tok()
    x = _images(2, 1, 28, 28)
    with torch.no_grad():
        out = tok(x).tokens
        patches = x.unfold(2, 4, 4).unfold(3, 4, 4).reshape(2, 49, 16)  # (B, gh*gw, p*p), row-major
        expected = patches @ tok.proj.weight.reshape(DIM, 16).T + tok.proj.bias
    torch.testing.assert_close(out[:, 1:], expected + tok.pos_embed[:, 1:], atol=1e-5, rtol=0)
    torch.testing.assert_close(out[:, 0], (tok.cls_token + tok.pos_embed[:, :1])[0].expand(2, -1))


def test_trained_size_does_not_resize(monkeypatch: pytest.MonkeyPatch) -> None:
    def fail(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("resize_2d called at the trained size")

    monkeypatch.setattr(image_module, "resize_2d", fail)
    tok = _tok()
    with torch.no_grad():
        assert tok(_images(2, 1, 28, 28)).tokens.shape == (2, 50, DIM)
    assert tok._positions((7, 7), torch.float32, torch.device("cpu")) is tok.pos_embed


@pytest.mark.parametrize("cls_token", [True, False])
def test_other_size_resizes_learned_positions(cls_token: bool) -> None:
    tok = _tok(cls_token=cls_token)
    x = _images(2, 1, 56, 56)
    prefix = int(cls_token)
    with torch.no_grad():
        out = tok(x)
        pos = resize_2d(tok.pos_embed, (7, 7), (14, 14), prefix)
        no_pos = tok.proj(x).flatten(2).transpose(1, 2)
    assert out.tokens.shape == (2, prefix + 14 * 14, DIM) and out.grid == (14, 14)
    assert pos.shape == (1, prefix + 196, DIM)
    torch.testing.assert_close(out.tokens[:, prefix:], no_pos + pos[:, prefix:], atol=1e-5, rtol=0)
    if cls_token:  # the CLS entry is carried over, not interpolated
        torch.testing.assert_close(out.tokens[:, 0], (tok.cls_token + tok.pos_embed[:, :1])[0].expand(2, -1))
    # a rectangular input resizes each axis on its own
    with torch.no_grad():
        assert tok(_images(1, 1, 28, 56)).grid == (7, 14)


@pytest.mark.parametrize("cls_token", [True, False])
def test_other_size_recomputes_sincos(cls_token: bool) -> None:
    tok = _tok(cls_token=cls_token, pos_embed="sincos")
    x = _images(2, 1, 56, 56)
    prefix = int(cls_token)
    with torch.no_grad():
        out = tok(x)
        no_pos = tok.proj(x).flatten(2).transpose(1, 2)
    assert out.tokens.shape == (2, prefix + 196, DIM) and out.grid == (14, 14)
    torch.testing.assert_close(out.tokens[:, prefix:], no_pos + sincos_2d(14, 14, DIM), atol=1e-5, rtol=0)
    assert not any(p is tok.pos_embed for p in tok.parameters())  # fixed, not learned
    assert "pos_embed" not in tok.state_dict()


def test_patch_dropout_only_in_training_and_keeps_cls_first() -> None:
    tok = _tok(patch_dropout=0.5)
    x = _images(3, 1, 28, 28)
    with torch.no_grad():
        full = tok(x)
        assert full.tokens.shape == (3, 50, DIM) and full.grid == (7, 7)
        tok.train()
        torch.manual_seed(0)
        dropped = tok(x)
    kept = max(1, int(49 * (1 - 0.5)))  # timm PatchDropout's rounding
    assert dropped.tokens.shape == (3, 1 + kept, DIM)
    assert dropped.grid is None  # the kept patches no longer form a grid
    assert dropped.num_prefix_tokens == 1
    torch.testing.assert_close(dropped.tokens[:, 0], full.tokens[:, 0])  # CLS stays, first
    # every kept token is one of the sample's own patch tokens
    for b in range(3):
        diff = (dropped.tokens[b, 1:, None] - full.tokens[b, None, 1:]).abs().amax(-1)  # (kept, 49)
        match = diff.min(dim=1)
        assert bool((match.values < 1e-6).all())
        assert match.indices.unique().numel() == kept  # distinct patches, none duplicated


def test_channel_count_error_names_expected_channels() -> None:
    tok = _tok()
    with pytest.raises(ValueError, match=r"\(B, 1, H, W\).*\(2, 3, 28, 28\)"):
        tok(_images(2, 3, 28, 28))
    with pytest.raises(ValueError, match=r"\(B, 1, H, W\).*\(1, 28, 28\)"):
        tok(_images(1, 28, 28))


def test_indivisible_image_error_names_sizes() -> None:
    tok = _tok()
    with pytest.raises(ValueError, match=r"\(30, 28\).*patch_size 4"):
        tok(_images(1, 1, 30, 28))
    with pytest.raises(ValueError, match=r"\(30, 30\).*patch_size 4"):
        _tok(image_size=30)


def test_patch_size_must_be_multiple_of_stem_stride() -> None:
    with pytest.raises(ValueError, match="patch_size 4 .*stride 8"):
        _tok(stem_channels=[8, 8, 8])
    with pytest.raises(ValueError, match="patch_size 6 .*stride 4"):
        _tok(patch_size=6, image_size=24, stem_channels=[8, 8])


def test_bad_pos_embed_name() -> None:
    with pytest.raises(ValueError, match="'rope'"):
        _tok(pos_embed="rope")

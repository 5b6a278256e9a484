"""timm ViT → mmformer Classifier: same logits, same parameter count, unsupported variants named.

Every timm model here is randomly initialized (pretrained=False: no downloads); biases and norm
weights are randomized too (timm initializes them to 0 / 1), so a missed copy shows in the logits.
"""

from __future__ import annotations

from typing import Any

import pytest
import timm
import torch
from timm.models.vision_transformer import VisionTransformer
from torch import nn

from mmformer.models.classifier import Classifier
from mmformer.models.timm_weights import classifier_from_timm


def _randomize(model: nn.Module, seed: int = 1) -> nn.Module:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn(p.shape, generator=g))
    return model.eval()


def _vit(**kw: Any) -> VisionTransformer:
    torch.manual_seed(0)
    return _randomize(VisionTransformer(**kw))


def _count(m: nn.Module) -> int:
    return sum(p.numel() for p in m.parameters())


def _images(shape: tuple[int, ...], seed: int = 0) -> torch.Tensor:
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed))


SMALL = dict(img_size=16, patch_size=8, embed_dim=32, depth=1, num_heads=2, num_classes=3)

VARIANTS = {
    # a registered timm architecture at a small resolution: CLS token, token pooling, final norm
    "vit_tiny_cls": (lambda: _randomize(timm.create_model("vit_tiny_patch16_224", img_size=64, num_classes=10)),
                     (2, 3, 64, 64), "cls", True, False),
    # mean pooling with fc_norm (timm's final norm is Identity), grayscale input
    "avg_fc_norm": (lambda: _vit(img_size=32, patch_size=4, embed_dim=96, depth=3, num_heads=3, num_classes=7,
                                 global_pool="avg", in_chans=1), (2, 1, 32, 32), "mean", False, True),
    # no CLS token, mean pooling
    "no_cls_avg": (lambda: _vit(img_size=32, patch_size=8, embed_dim=64, depth=2, num_heads=4, num_classes=5,
                                class_token=False, global_pool="avg"), (3, 3, 32, 32), "mean", False, True),
    # no CLS token, final norm before mean pooling (fc_norm=False), bias-free qkv, MLP ratio 2, rectangular image
    "no_cls_norm_no_qkv_bias": (lambda: _vit(img_size=(16, 32), patch_size=8, embed_dim=48, depth=2, num_heads=2,
                                             num_classes=4, class_token=False, global_pool="avg", fc_norm=False,
                                             qkv_bias=False, mlp_ratio=2.0), (2, 3, 16, 32), "mean", True, False),
}


@pytest.mark.parametrize("name", list(VARIANTS))
def test_logits_and_parameter_count_match_timm(name: str) -> None:
    build, shape, pool, final_norm, pool_norm = VARIANTS[name]
    ref = build()
    model = classifier_from_timm(ref)
    assert isinstance(model, Classifier) and not model.training
    assert _count(model) == _count(ref)
    assert model.head.pool.pool == pool
    assert isinstance(model.backbone.norm, nn.LayerNorm) == final_norm
    assert isinstance(model.head.norm, nn.LayerNorm) == pool_norm
    assert model.tokenizer.num_prefix_tokens == ref.num_prefix_tokens
    x = _images(shape)
    with torch.no_grad():
        expected, got = ref(x), model(x)
    assert got.shape == expected.shape == (shape[0], ref.num_classes)
    assert expected.abs().max() > 1e-2  # non-trivial logits
    torch.testing.assert_close(got, expected, atol=1e-4, rtol=0)


def test_every_weight_matters() -> None:
    """Copied weights are used: disturbing any one mmformer tensor changes the logits."""
    ref = VARIANTS["avg_fc_norm"][0]()
    model = classifier_from_timm(ref)
    x = _images((2, 1, 32, 32))
    with torch.no_grad():
        base = model(x)
        for name, p in model.named_parameters():
            delta = 0.5 * torch.randn(p.shape, generator=torch.Generator().manual_seed(2))
            p.add_(delta)  # random, not uniform: LayerNorm erases a uniform shift of a token
            assert not torch.allclose(model(x), base, atol=1e-4), name
            p.sub_(delta)


def test_name_string_with_create_kwargs() -> None:
    kw = dict(img_size=32, num_classes=5, depth=2)
    torch.manual_seed(0)
    model = classifier_from_timm("vit_tiny_patch16_224", **kw).eval()
    torch.manual_seed(0)
    ref = timm.create_model("vit_tiny_patch16_224", **kw).eval()
    assert len(model.backbone.blocks) == 2 and model.head.fc.out_features == 5
    x = _images((2, 3, 32, 32))
    with torch.no_grad():
        torch.testing.assert_close(model(x), ref(x), atol=1e-4, rtol=0)


def test_create_kwargs_need_a_name() -> None:
    with pytest.raises(ValueError, match="create_kwargs"):
        classifier_from_timm(_vit(**SMALL), num_classes=4)


def test_keeps_dtype_device_and_mode() -> None:
    ref = _vit(**SMALL).double().train()
    model = classifier_from_timm(ref)
    assert model.training and next(model.parameters()).dtype == torch.float64
    model.eval(), ref.eval()
    x = _images((2, 3, 16, 16)).double()
    with torch.no_grad():
        torch.testing.assert_close(model(x), ref(x), atol=1e-10, rtol=0)


def test_larger_images_match_dynamic_img_size_timm() -> None:
    """At 2x the trained size both resample the position table (bicubic, antialiased) identically."""
    kw = dict(img_size=32, patch_size=8, embed_dim=64, depth=2, num_heads=4, num_classes=5)
    ref = _vit(**kw)
    model = classifier_from_timm(ref)
    dynamic = VisionTransformer(**kw, dynamic_img_size=True).eval()
    dynamic.load_state_dict(ref.state_dict())
    x = _images((2, 3, 64, 64))
    with torch.no_grad():
        got, expected = model(x), dynamic(x)
        assert model.tokenizer(x).grid == (8, 8)
    assert got.shape == (2, 5)
    torch.testing.assert_close(got, expected, atol=1e-4, rtol=0)
    # a dynamic-size timm model converts too, and agrees at its trained size and at 2x
    converted = classifier_from_timm(dynamic)
    for size in (32, 64):
        y = _images((2, 3, size, size), seed=size)
        with torch.no_grad():
            torch.testing.assert_close(converted(y), dynamic(y), atol=1e-4, rtol=0)


@pytest.mark.parametrize(
    "kwargs, named",
    [
        (dict(reg_tokens=2), "2 extra prefix tokens (registers"),
        (dict(no_embed_class=True), "no_embed_class"),
        (dict(pre_norm=True), "pre_norm"),
        (dict(init_values=1e-5), "layer scale"),
        (dict(qk_norm=True), "qk_norm"),
        (dict(global_pool="map"), "global_pool='map'"),
        (dict(global_pool="max"), "global_pool='max'"),
        (dict(num_classes=0), "no classifier head"),
        (dict(embed_norm_layer="layernorm"), "patch embedding with a norm"),
        (dict(pos_embed="none"), "no position embedding"),
        (dict(dynamic_img_pad=True), "dynamic_img_pad"),
        (dict(proj_bias=False), "proj_bias=False"),
        (dict(act_layer="silu"), "Mlp with SiLU (only Mlp with exact GELU)"),
    ],
)
def test_unsupported_variants_raise(kwargs: dict, named: str) -> None:
    with pytest.raises(ValueError, match="unsupported") as err:
        classifier_from_timm(_vit(**(SMALL | kwargs)))
    assert named in str(err.value)


def test_not_a_vit_raises() -> None:
    with pytest.raises(ValueError, match="VisionTransformer"):
        classifier_from_timm(nn.Linear(2, 2))  # type: ignore[arg-type]

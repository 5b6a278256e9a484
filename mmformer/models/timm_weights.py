"""Converts a timm Vision Transformer into an mmformer :class:`Classifier` with the same weights.

Example::

    from mmformer.models.timm_weights import classifier_from_timm
    model = classifier_from_timm("vit_small_patch16_224", pretrained=True).eval()  # needs cached weights
    logits = model(images)  # == timm's logits; other (patch-divisible) image sizes resample positions

The converted model resamples its position table (bicubic, as ``dynamic_img_size=True`` timm
models do) when it is fed images of another size.
"""

from __future__ import annotations

from typing import Any

import timm
from timm.layers import LayerNorm, Mlp, PatchEmbed
from timm.layers.attention import Attention
from timm.models.vision_transformer import Block, VisionTransformer
from torch import nn

from mmformer.backbone import BackboneConfig
from mmformer.models.builders import build
from mmformer.models.classifier import Classifier
from mmformer.models.config import ClassifierConfig, TokenizerSpec
from mmformer.tokenizers.image import ImagePatchTokenizer

# timm state_dict prefix → mmformer Classifier prefix (longest prefixes first).
_RENAMES = (("patch_embed.proj.", "tokenizer.proj."), ("cls_token", "tokenizer.cls_token"),
            ("pos_embed", "tokenizer.pos_embed"), ("blocks.", "backbone.blocks."), ("norm.", "backbone.norm."),
            ("fc_norm.", "head.norm."), ("head.", "head.fc."))


def _unsupported(model: VisionTransformer) -> list[str]:
    """The features of ``model`` the conversion cannot reproduce (empty = convertible)."""
    pe, blk = model.patch_embed, model.blocks[0]
    is_ln = lambda m: type(m) in (nn.LayerNorm, LayerNorm) and m.elementwise_affine  # noqa: E731
    checks = {
        f"{model.num_prefix_tokens - int(model.has_class_token)} extra prefix tokens (registers, distillation)":
            model.num_prefix_tokens != int(model.has_class_token),
        "no_embed_class=True": model.no_embed_class,
        "no position embedding (pos_embed='none')": model.pos_embed is None,
        "pre_norm=True (norm_pre is not Identity)": not isinstance(model.norm_pre, nn.Identity),
        f"global_pool={model.global_pool!r} (only 'token' and 'avg')": model.global_pool not in ("token", "avg"),
        "pool_include_prefix=True": model.pool_include_prefix,
        "num_classes < 2 (no classifier head)": not isinstance(model.head, nn.Linear) or model.num_classes < 2,
        f"patch embedding {type(pe).__name__} (only PatchEmbed)": type(pe) is not PatchEmbed,
        "patch embedding with a norm (embed_norm_layer)": not isinstance(getattr(pe, "norm", None), nn.Identity),
        "patch embedding without bias": getattr(getattr(pe, "proj", None), "bias", None) is None,
        f"non-square patch_size {getattr(pe, 'patch_size', None)}": len(set(getattr(pe, "patch_size", (0, 1)))) != 1,
        "dynamic_img_pad=True": getattr(pe, "dynamic_img_pad", False),
        f"block type {type(blk).__name__} (only timm's Block)": any(type(b) is not Block for b in model.blocks),
        "layer scale (init_values; ls1/ls2 not Identity)": any(
            not isinstance(getattr(b, ls, nn.Identity()), nn.Identity) for b in model.blocks for ls in ("ls1", "ls2")),
        f"attention type {type(blk.attn).__name__} (only timm's Attention)": type(blk.attn) is not Attention,
        "qk_norm=True": not isinstance(getattr(blk.attn, "q_norm", nn.Identity()), nn.Identity),
        "scale_attn_norm=True": not isinstance(getattr(blk.attn, "norm", nn.Identity()), nn.Identity),
        "gated attention": getattr(blk.attn, "gate", None) is not None,
        "attention width != embed_dim (attn_head_dim)":
            getattr(blk.attn, "attn_dim", model.embed_dim) != model.embed_dim,
        "attention output projection without bias (proj_bias=False)":
            getattr(blk.attn, "proj", nn.Linear(1, 1)).bias is None,
        f"MLP {type(blk.mlp).__name__} with {type(getattr(blk.mlp, 'act', None)).__name__} (only Mlp with exact GELU)":
            type(blk.mlp) is not Mlp or type(blk.mlp.act) is not nn.GELU or blk.mlp.act.approximate != "none",
        "scale_mlp_norm=True": not isinstance(getattr(blk.mlp, "norm", None), nn.Identity),
        "MLP without biases": getattr(getattr(blk.mlp, "fc1", None), "bias", None) is None,
        "final_norm=False (no norm after the blocks nor after pooling)":
            isinstance(model.norm, nn.Identity) and isinstance(model.fc_norm, nn.Identity),
        "norm layers other than affine LayerNorm": not all(
            is_ln(m) for m in (blk.norm1, blk.norm2, model.norm, model.fc_norm) if not isinstance(m, nn.Identity)),
    }
    return [what for what, bad in checks.items() if bad]


def _check(model: Any) -> VisionTransformer:
    if not isinstance(model, VisionTransformer):
        raise ValueError(f"expected a timm VisionTransformer, got {type(model).__name__}")
    problems = _unsupported(model)
    if problems:
        raise ValueError(f"cannot convert {type(model).__name__} to mmformer: unsupported " + "; ".join(problems))
    return model


def _config(model: VisionTransformer) -> ClassifierConfig:
    pe, blk, dim = model.patch_embed, model.blocks[0], model.embed_dim
    tokenizer = TokenizerSpec(f"{ImagePatchTokenizer.__module__}.{ImagePatchTokenizer.__qualname__}", dict(
        image_size=list(pe.img_size), patch_size=pe.patch_size[0], in_chans=pe.proj.in_channels,
        cls_token=model.cls_token is not None, pos_embed="learned",
        patch_dropout=getattr(model.patch_drop, "prob", 0.0)))
    backbone = BackboneConfig(
        dim=dim, depth=len(model.blocks), num_heads=blk.attn.num_heads,
        mlp_ratio=blk.mlp.fc1.out_features / dim, norm="layernorm", norm_eps=blk.norm1.eps, bias=True,
        drop_path=getattr(model.blocks[-1].drop_path1, "drop_prob", 0.0),
        attn_drop=blk.attn.attn_drop.p, proj_drop=blk.attn.proj_drop.p,
    )
    if int(dim * backbone.mlp_ratio) != blk.mlp.fc1.out_features:  # Encoder rounds dim * ratio down
        raise ValueError(f"MLP width {blk.mlp.fc1.out_features} is not reproducible from dim {dim}")
    return ClassifierConfig(tokenizer, model.num_classes, backbone, "cls" if model.global_pool == "token" else "mean",
                            head_dropout=model.head_drop.p, fc_norm=isinstance(model.fc_norm, nn.LayerNorm))


def timm_classifier_config(model: VisionTransformer) -> ClassifierConfig:
    """The :class:`~mmformer.models.ClassifierConfig` of a timm ViT (``build`` of it is :func:`timm_classifier`).

    Raises:
        ValueError: a feature mmformer does not reproduce, or ``qkv_bias=False``, which the config cannot say
            (:class:`~mmformer.backbone.BackboneConfig` has one ``bias`` for every projection).
    """
    cfg = _config(_check(model))
    if model.blocks[0].attn.qkv.bias is None:
        raise ValueError("a timm ViT with qkv_bias=False has no typed config (BackboneConfig.bias covers every "
                         "projection); build it with timm_classifier")
    return cfg


def timm_classifier(model: VisionTransformer) -> Classifier:
    """An untrained :class:`Classifier` shaped like ``model``: ``build(`` its config ``)``, its norms' epsilons set
    from timm's, and bias-free qkv projections for ``qkv_bias=False`` (which the config cannot say)."""
    model = _check(model)
    blk, dim = model.blocks[0], model.embed_dim
    out = build(_config(model))
    if blk.attn.qkv.bias is None:  # qkv_bias=False: bias-free qkv, other projections keep theirs
        for b in out.backbone.blocks:
            b.attn.qkv = nn.Linear(dim, 3 * dim, bias=False)
    for mine, theirs in ((out.backbone.norm, model.norm), (out.head.norm, model.fc_norm)):
        if isinstance(mine, nn.LayerNorm):
            mine.eps = theirs.eps
    return out  # type: ignore[return-value]


def classifier_from_timm(model: VisionTransformer | str, **create_kwargs: Any) -> Classifier:
    """Builds an mmformer ``Classifier`` (ImagePatchTokenizer + Encoder + ClassificationHead)
    equal to a timm ViT and copies every weight, so that the logits match timm's.

    Args:
        model: a timm ``VisionTransformer``, or a timm model name built with
            ``timm.create_model(model, **create_kwargs)`` (pass ``pretrained=True`` for weights).
        create_kwargs: only with a name; e.g. ``pretrained``, ``num_classes``, ``img_size``.
    Returns:
        the Classifier on the timm model's device and dtype, in its train/eval mode.
    Raises:
        ValueError: the model uses a feature mmformer does not reproduce (each one is named),
            or the copied parameter counts differ.
    """
    if isinstance(model, str):
        model = timm.create_model(model, **create_kwargs)
    elif create_kwargs:
        raise ValueError(f"create_kwargs {sorted(create_kwargs)} only apply when model is a timm model name")
    out = timm_classifier(model)
    state = {}
    for key, value in model.state_dict().items():
        old, new = next(((o, n) for o, n in _RENAMES if key.startswith(o)), (key, key))
        state[new + key[len(old):]] = value
    try:
        out.load_state_dict(state, strict=True)
    except RuntimeError as e:
        raise ValueError(f"timm weights do not fit the mmformer model: {e}") from e
    n_timm, n_mine = (sum(p.numel() for p in m.parameters()) for m in (model, out))
    if n_timm != n_mine:
        raise ValueError(f"parameter counts differ after conversion: timm {n_timm}, mmformer {n_mine}")
    ref = next(model.parameters())
    return out.to(device=ref.device, dtype=ref.dtype).train(model.training)

"""Vision Transformers: timm (``config.json`` with ``architecture``) and Hugging Face
``ViTForImageClassification`` (``model_type: vit``) → :class:`~mmformer.models.Classifier`, and back.

timm models are rebuilt by timm from the config's ``architecture`` and ``model_args`` (timm's own hub
layout, written by ``timm.models.save_for_hf``) and converted by
:func:`mmformer.models.timm_weights.classifier_from_timm`, which checks every feature.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from torch import Tensor, nn

from mmformer.backbone import BackboneConfig
from mmformer.models import ClassifierConfig, build
from mmformer.models.classifier import Classifier
from mmformer.pretrained.common import (
    CheckpointError,
    Entry,
    convert_entries,
    export_entries,
    field,
    mlp_ratio,
    rename,
    tokenizer_spec,
    write_folder,
)
from mmformer.tokenizers.image import ImagePatchTokenizer

HF_ACTS = {"gelu": "gelu", "gelu_new": "mlp_gelu_tanh", "gelu_pytorch_tanh": "mlp_gelu_tanh",
           "quick_gelu": "mlp_quick_gelu", "relu": "mlp_relu", "silu": "mlp_silu", "swish": "mlp_silu"}


def hf_mlp(config: dict[str, Any], key: str = "hidden_act") -> str:
    act = field(config, key, "gelu")
    if act not in HF_ACTS:
        raise CheckpointError(f"config.json: {key}={act!r} is not supported; known: {sorted(HF_ACTS)}")
    return HF_ACTS[act]


def is_timm(config: dict[str, Any]) -> bool:
    return "architecture" in config and "model_type" not in config


def _timm_model(config: dict[str, Any]) -> nn.Module:
    import timm

    kwargs = dict(config.get("model_args") or {})
    kwargs.setdefault("num_classes", field(config, "num_classes"))
    try:
        return timm.create_model(config["architecture"], pretrained=False, **kwargs)
    except Exception as e:  # unknown name or argument: name the field
        raise CheckpointError(f"config.json: timm cannot build architecture {config['architecture']!r} "
                              f"with model_args {kwargs}: {e}") from e


def _hf_entries(depth: int) -> list[Entry]:
    e: list[Entry] = [("tokenizer.cls_token", ("vit.embeddings.cls_token",), ""),
                      ("tokenizer.pos_embed", ("vit.embeddings.position_embeddings",), "")]
    e += [(f"tokenizer.proj.{p}", (f"vit.embeddings.patch_embeddings.projection.{p}",), "") for p in ("weight", "bias")]
    for i in range(depth):
        h, m = f"vit.encoder.layer.{i}.", f"backbone.blocks.{i}."
        for p in ("weight", "bias"):
            e += [(f"{m}attn.qkv.{p}", tuple(f"{h}attention.attention.{n}.{p}" for n in ("query", "key", "value")), ""),
                  (f"{m}attn.proj.{p}", (f"{h}attention.output.dense.{p}",), ""),
                  (f"{m}mlp.fc1.{p}", (f"{h}intermediate.dense.{p}",), ""),
                  (f"{m}mlp.fc2.{p}", (f"{h}output.dense.{p}",), ""),
                  (f"{m}norm1.{p}", (f"{h}layernorm_before.{p}",), ""),
                  (f"{m}norm2.{p}", (f"{h}layernorm_after.{p}",), "")]
    e += [(f"backbone.norm.{p}", (f"vit.layernorm.{p}",), "") for p in ("weight", "bias")]
    e += [(f"head.fc.{p}", (f"classifier.{p}",), "") for p in ("weight", "bias")]
    return e


def model_config(config: dict[str, Any]) -> ClassifierConfig:
    """The :class:`~mmformer.models.ClassifierConfig` of a ViT config (timm or HF ViT)."""
    if is_timm(config):
        from mmformer.models.timm_weights import timm_classifier_config

        return timm_classifier_config(_timm_model(config))
    dim = field(config, "hidden_size")
    if not field(config, "qkv_bias", True):
        raise CheckpointError("config.json: qkv_bias=false is not supported for HF ViTs")
    tok = tokenizer_spec(ImagePatchTokenizer, image_size=field(config, "image_size"),
                         patch_size=field(config, "patch_size"), in_chans=field(config, "num_channels", 3),
                         cls_token=True, pos_embed="learned")
    backbone = BackboneConfig(
        dim=dim, depth=field(config, "num_hidden_layers"), num_heads=field(config, "num_attention_heads"),
        mlp_ratio=mlp_ratio(dim, field(config, "intermediate_size")), mlp=hf_mlp(config),
        norm_eps=field(config, "layer_norm_eps", 1e-12))
    num_labels = len(config["id2label"]) if config.get("id2label") else field(config, "num_labels", 2)
    return ClassifierConfig(tok, num_labels, backbone, pool="cls")


def build_model(config: dict[str, Any]) -> Classifier:
    """An untrained Classifier shaped like the checkpoint's config (timm or HF ViT): ``build(model_config(config))``,
    plus, for a timm ViT, what its config cannot say (see :func:`~mmformer.models.timm_weights.timm_classifier`)."""
    if is_timm(config):
        from mmformer.models.timm_weights import timm_classifier

        return timm_classifier(_timm_model(config))
    return build(model_config(config))  # type: ignore[return-value]


def convert_state_dict(peer_state: dict[str, Tensor], config: dict[str, Any]) -> dict[str, Tensor]:
    """timm or HF ViT tensors → the :class:`Classifier`'s."""
    if is_timm(config):
        from mmformer.models.timm_weights import _RENAMES

        return rename(peer_state, _RENAMES)
    # A headless ViTModel (e.g. the in21k checkpoints) has no "vit." prefix and no classifier: its
    # converted state has no head.fc, so load it with load_into(model.backbone/tokenizer, prefix=...).
    state = {k if k.startswith(("vit.", "classifier.")) else f"vit.{k}": v for k, v in peer_state.items()}
    entries = [e for e in _hf_entries(field(config, "num_hidden_layers"))
               if "classifier.weight" in state or not e[0].startswith("head.")]
    return convert_entries(state, entries, "the HF ViT checkpoint", ignore=("*.position_ids", "vit.pooler.*"))


def export(model: Classifier, out_dir: str | Path, flavor: str = "hf") -> Path:
    """Writes ``model`` as an HF ``ViTForImageClassification`` folder (``flavor="hf"``) or a timm
    ``vit_*`` folder (``flavor="timm"``): ``model.safetensors`` + ``config.json``."""
    tok, bb, head = model.tokenizer, model.backbone, model.head
    c, state = bb.config, model.state_dict()
    if not isinstance(tok, ImagePatchTokenizer) or tok.cls_token is None or tok.pos_kind != "learned":
        raise ValueError("only ViTs with a CLS token and learned positions export (ImagePatchTokenizer)")
    if hasattr(tok, "norm") or tok.proj.bias is None or len(tok.stem):
        raise ValueError("a tokenizer with a conv stem, pre-norm or a bias-free patch projection does not export")
    hidden = bb.blocks[0].mlp.fc1.out_features
    if flavor == "timm":
        from mmformer.models.timm_weights import _RENAMES

        pool = head.pool.pool
        if pool not in ("cls", "mean"):
            raise ValueError(f"timm ViTs pool by cls or avg, this head pools by {pool!r}")
        args = dict(img_size=list(tok.image_size), patch_size=tok.patch_size, in_chans=tok.in_chans, embed_dim=c.dim,
                    depth=c.depth, num_heads=c.num_heads, mlp_ratio=hidden / c.dim,
                    global_pool="token" if pool == "cls" else "avg", fc_norm=isinstance(head.norm, nn.LayerNorm),
                    qkv_bias=bb.blocks[0].attn.qkv.bias is not None)
        inverse = [(n, o) for o, n in _RENAMES]
        return write_folder(out_dir, rename(state, inverse), {
            "architecture": "vit_base_patch16_224", "num_classes": head.num_classes, "model_args": args})
    if head.pool.pool != "cls" or not isinstance(head.norm, nn.Identity) or c.norm_position != "pre":
        raise ValueError("an HF ViT pools the CLS token through the final norm; this model differs")
    act = {v: k for k, v in HF_ACTS.items() if k in ("gelu", "gelu_new", "quick_gelu", "relu", "silu")}
    config = {"model_type": "vit", "architectures": ["ViTForImageClassification"], "hidden_size": c.dim,
              "num_hidden_layers": c.depth, "num_attention_heads": c.num_heads, "intermediate_size": hidden,
              "hidden_act": act[c.mlp], "layer_norm_eps": c.norm_eps, "image_size": tok.image_size[0],
              "patch_size": tok.patch_size, "num_channels": tok.in_chans, "qkv_bias": True,
              "id2label": {str(i): f"LABEL_{i}" for i in range(head.num_classes)},
              "label2id": {f"LABEL_{i}": i for i in range(head.num_classes)}}
    if tok.image_size[0] != tok.image_size[1]:
        raise ValueError(f"HF ViTs take square images, this one is {tok.image_size}")
    return write_folder(out_dir, export_entries(state, _hf_entries(c.depth)), config)

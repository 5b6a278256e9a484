"""CLIP: Hugging Face ``CLIPModel`` (``model_type: clip``) and open_clip ViT CLIPs (``open_clip_config.json``)
→ :class:`~mmformer.models.dual_encoder.ContrastiveModel`, and back.

Both towers are pre-norm encoders. The image tower has a bias-free patch projection, a CLS token and a
LayerNorm before the blocks (``ln_pre``); the text tower is causal and pools its last real token (the
end-of-text token: pad text with the checkpoint's pad id — open_clip 0, HF ``pad_token_id``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from torch import Tensor

from mmformer.backbone import BackboneConfig
from mmformer.models import ContrastiveConfig, build
from mmformer.models.dual_encoder import ContrastiveModel
from mmformer.pretrained.common import (
    OPEN_CLIP_CONFIG,
    CheckpointError,
    Entry,
    convert_entries,
    export_entries,
    field,
    mlp_ratio,
    take,
    tokenizer_spec,
    write_folder,
)
from mmformer.pretrained.vit import hf_mlp
from mmformer.tokenizers.image import ImagePatchTokenizer
from mmformer.tokenizers.text import TextTokenizer

OPEN_CLIP_WEIGHTS = "open_clip_model.safetensors"
_LN = ("weight", "bias")


def _is_open_clip(config: dict[str, Any]) -> bool:
    return "model_cfg" in config


# -- Hugging Face CLIPModel --------------------------------------------------------------------------
def _hf_layers(h: str, m: str, depth: int) -> list[Entry]:
    e: list[Entry] = []
    for i in range(depth):
        for p in _LN:
            e += [(f"{m}blocks.{i}.attn.qkv.{p}", tuple(f"{h}layers.{i}.self_attn.{n}_proj.{p}" for n in "qkv"), ""),
                  (f"{m}blocks.{i}.attn.proj.{p}", (f"{h}layers.{i}.self_attn.out_proj.{p}",), ""),
                  (f"{m}blocks.{i}.norm1.{p}", (f"{h}layers.{i}.layer_norm1.{p}",), ""),
                  (f"{m}blocks.{i}.norm2.{p}", (f"{h}layers.{i}.layer_norm2.{p}",), ""),
                  (f"{m}blocks.{i}.mlp.fc1.{p}", (f"{h}layers.{i}.mlp.fc1.{p}",), ""),
                  (f"{m}blocks.{i}.mlp.fc2.{p}", (f"{h}layers.{i}.mlp.fc2.{p}",), "")]
    return e


def _hf_entries(vision_depth: int, text_depth: int) -> list[Entry]:
    v, t = "vision_model.", "text_model."
    e: list[Entry] = [("tokenizer_a.proj.weight", (f"{v}embeddings.patch_embedding.weight",), ""),
                      ("tokenizer_b.embed.weight", (f"{t}embeddings.token_embedding.weight",), ""),
                      ("tokenizer_b.pos.weight", (f"{t}embeddings.position_embedding.weight",), ""),
                      ("proj_a.weight", ("visual_projection.weight",), ""),
                      ("proj_b.weight", ("text_projection.weight",), ""), ("logit_scale", ("logit_scale",), "")]
    e += [(f"tokenizer_a.norm.{p}", (f"{v}pre_layrnorm.{p}",), "") for p in _LN]
    e += [(f"backbone_a.norm.{p}", (f"{v}post_layernorm.{p}",), "") for p in _LN]
    e += [(f"backbone_b.norm.{p}", (f"{t}final_layer_norm.{p}",), "") for p in _LN]
    return e + _hf_layers(f"{v}encoder.", "backbone_a.", vision_depth) + _hf_layers(
        f"{t}encoder.", "backbone_b.", text_depth)


# -- open_clip ----------------------------------------------------------------------------------------
def _oc_layers(h: str, m: str, depth: int) -> list[Entry]:
    e: list[Entry] = []
    for i in range(depth):
        b, o = f"{m}blocks.{i}.", f"{h}resblocks.{i}."
        e += [(f"{b}attn.qkv.weight", (f"{o}attn.in_proj_weight",), ""), (f"{b}attn.qkv.bias", (f"{o}attn.in_proj_bias",), "")]
        for p in _LN:
            e += [(f"{b}attn.proj.{p}", (f"{o}attn.out_proj.{p}",), ""), (f"{b}norm1.{p}", (f"{o}ln_1.{p}",), ""),
                  (f"{b}norm2.{p}", (f"{o}ln_2.{p}",), ""), (f"{b}mlp.fc1.{p}", (f"{o}mlp.c_fc.{p}",), ""),
                  (f"{b}mlp.fc2.{p}", (f"{o}mlp.c_proj.{p}",), "")]
    return e


def _oc_entries(vision_depth: int, text_depth: int) -> list[Entry]:
    e: list[Entry] = [("tokenizer_a.proj.weight", ("visual.conv1.weight",), ""),
                      ("tokenizer_b.embed.weight", ("token_embedding.weight",), ""),
                      ("tokenizer_b.pos.weight", ("positional_embedding",), ""),
                      ("proj_a.weight", ("visual.proj",), "T"), ("proj_b.weight", ("text_projection",), "T"),
                      ("logit_scale", ("logit_scale",), "")]
    e += [(f"tokenizer_a.norm.{p}", (f"visual.ln_pre.{p}",), "") for p in _LN]
    e += [(f"backbone_a.norm.{p}", (f"visual.ln_post.{p}",), "") for p in _LN]
    e += [(f"backbone_b.norm.{p}", (f"ln_final.{p}",), "") for p in _LN]
    return e + _oc_layers("visual.transformer.", "backbone_a.", vision_depth) + _oc_layers(
        "transformer.", "backbone_b.", text_depth)


_OC_VISION_UNSUPPORTED = ("timm_model_name", "hf_model_name", "attentional_pool", "no_ln_pre", "final_ln_after_pool",
                          "ls_init_value", "patch_dropout", "act_kwargs", "norm_kwargs", "output_tokens")
_OC_TEXT_UNSUPPORTED = ("hf_model_name", "embed_cls", "proj_bias", "ls_init_value", "no_causal_mask", "output_tokens")


def _oc_config(config: dict[str, Any]) -> tuple[dict, dict, dict]:
    cfg = field(config, "model_cfg", where=OPEN_CLIP_CONFIG)
    vision, text = field(cfg, "vision_cfg", where=OPEN_CLIP_CONFIG), field(cfg, "text_cfg", where=OPEN_CLIP_CONFIG)
    for part, names in (("vision_cfg", _OC_VISION_UNSUPPORTED), ("text_cfg", _OC_TEXT_UNSUPPORTED)):
        for name in names:
            if (vision if part == "vision_cfg" else text).get(name):
                raise CheckpointError(f"{OPEN_CLIP_CONFIG}: model_cfg.{part}.{name} is not supported")
    if vision.get("pool_type", "tok") != "tok" or text.get("pool_type", "argmax") != "argmax":
        raise CheckpointError(f"{OPEN_CLIP_CONFIG}: only pool_type 'tok' (vision) and 'argmax' (text) are supported")
    if isinstance(vision.get("layers"), (list, tuple)):
        raise CheckpointError(f"{OPEN_CLIP_CONFIG}: model_cfg.vision_cfg.layers is a list (a ResNet tower)")
    return cfg, vision, text


def model_config(config: dict[str, Any]) -> ContrastiveConfig:
    """The :class:`~mmformer.models.ContrastiveConfig` of a CLIP config (HF CLIPModel or open_clip): two towers,
    the text one causal."""
    if _is_open_clip(config):
        cfg, v, t = _oc_config(config)
        act = "mlp_quick_gelu" if cfg.get("quick_gelu") else "gelu"
        vd, td = field(v, "width", 768), field(t, "width", 512)
        vision = dict(dim=vd, depth=field(v, "layers", 12), heads=vd // v.get("head_width", 64), eps=1e-5,
                      hidden=int(vd * v.get("mlp_ratio", 4.0)), image=v.get("image_size", 224),
                      patch=v.get("patch_size", 16), mlp=act)
        text = dict(dim=td, depth=field(t, "layers", 12), heads=t.get("heads", 8), eps=1e-5,
                    hidden=int(td * t.get("mlp_ratio", 4.0)), vocab=t.get("vocab_size", 49408),
                    max_len=t.get("context_length", 77), pad=t.get("pad_id", 0), mlp=act)
        embed_dim = field(cfg, "embed_dim", where=OPEN_CLIP_CONFIG)
    else:
        vc, tc = field(config, "vision_config"), field(config, "text_config")
        vision = dict(dim=field(vc, "hidden_size"), depth=field(vc, "num_hidden_layers"),
                      heads=field(vc, "num_attention_heads"), eps=field(vc, "layer_norm_eps", 1e-5),
                      hidden=field(vc, "intermediate_size"), image=field(vc, "image_size"),
                      patch=field(vc, "patch_size"), mlp=hf_mlp(vc))
        text = dict(dim=field(tc, "hidden_size"), depth=field(tc, "num_hidden_layers"),
                    heads=field(tc, "num_attention_heads"), eps=field(tc, "layer_norm_eps", 1e-5),
                    hidden=field(tc, "intermediate_size"), vocab=field(tc, "vocab_size"),
                    max_len=field(tc, "max_position_embeddings"), pad=field(tc, "pad_token_id", 1), mlp=hf_mlp(tc))
        embed_dim = field(config, "projection_dim")

    def backbone(c: dict, causal: bool) -> BackboneConfig:
        return BackboneConfig(dim=c["dim"], depth=c["depth"], num_heads=c["heads"], norm_eps=c["eps"],
                              mlp_ratio=mlp_ratio(c["dim"], c["hidden"]), mlp=c["mlp"], causal=causal)

    image_tok = tokenizer_spec(ImagePatchTokenizer, image_size=vision["image"], patch_size=vision["patch"],
                               cls_token=True, pos_embed="learned", patch_bias=False, pre_norm=True,
                               norm_eps=vision["eps"])
    text_tok = tokenizer_spec(TextTokenizer, vocab_size=text["vocab"], max_len=text["max_len"], positions="learned",
                              pad_id=text["pad"])
    return ContrastiveConfig(image_tok, text_tok, backbone(vision, False), backbone(text, True), pool_a="cls",
                             pool_b="last", embed_dim=embed_dim)


def build_model(config: dict[str, Any]) -> ContrastiveModel:
    """An untrained ContrastiveModel shaped like a CLIP config (HF CLIPModel or open_clip):
    ``build(model_config(config))``."""
    return build(model_config(config))  # type: ignore[return-value]


def _depths(config: dict[str, Any]) -> tuple[int, int]:
    if _is_open_clip(config):
        _, v, t = _oc_config(config)
        return v.get("layers", 12), t.get("layers", 12)
    return field(config["vision_config"], "num_hidden_layers"), field(config["text_config"], "num_hidden_layers")


def convert_state_dict(peer_state: dict[str, Tensor], config: dict[str, Any]) -> dict[str, Tensor]:
    """CLIP tensors (HF or open_clip) → the ContrastiveModel's."""
    state = dict(peer_state)
    prefix = "visual." if _is_open_clip(config) else "vision_model.embeddings."
    cls = take(state, prefix + "class_embedding")
    pos = take(state, "visual.positional_embedding" if _is_open_clip(config)
               else "vision_model.embeddings.position_embedding.weight")
    entries = _oc_entries(*_depths(config)) if _is_open_clip(config) else _hf_entries(*_depths(config))
    out = convert_entries(state, entries, "the CLIP checkpoint", ignore=("*position_ids", "attn_mask", "*.attn_mask"))
    out["tokenizer_a.cls_token"] = cls.reshape(1, 1, -1)
    out["tokenizer_a.pos_embed"] = pos[None]
    return out


def export(model: ContrastiveModel, out_dir: str | Path, flavor: str = "hf", eos_token_id: int | None = None) -> Path:
    """Writes ``model`` as an HF ``CLIPModel`` folder (``flavor="hf"``) or an open_clip folder
    (``flavor="open_clip"``: ``open_clip_config.json`` + ``open_clip_model.safetensors``).

    ``eos_token_id``: HF pools the first occurrence of this id (written into ``text_config``); open_clip
    pools the largest id of each row (its end-of-text token).
    """
    it, tt, ib, tb = model.tokenizer_a, model.tokenizer_b, model.backbone_a, model.backbone_b
    if tb is None or not isinstance(it, ImagePatchTokenizer) or not isinstance(tt, TextTokenizer):
        raise ValueError("only two-tower models with an image patch tokenizer and a text tokenizer export as CLIP")
    if not hasattr(it, "norm") or it.proj.bias is not None or it.cls_token is None or len(it.stem):
        raise ValueError("a CLIP image tower has ln_pre, a bias-free patch projection, a CLS token and no stem")
    if (model.pool_a.pool, model.pool_b.pool) != ("cls", "last") or not tb.causal or tt.kind != "learned":
        raise ValueError("a CLIP text tower is causal with learned positions and pools its last token; "
                         "the image tower pools CLS")
    vc, tc, state = ib.config, tb.config, model.state_dict()
    if vc.mlp != tc.mlp or vc.mlp not in ("gelu", "mlp_quick_gelu"):
        raise ValueError(f"CLIP towers share a gelu or quick_gelu MLP, got {vc.mlp!r} / {tc.mlp!r}")
    hidden = (ib.blocks[0].mlp.fc1.out_features, tb.blocks[0].mlp.fc1.out_features)
    cls, pos = state.pop("tokenizer_a.cls_token").reshape(-1), state.pop("tokenizer_a.pos_embed")[0]
    if flavor == "open_clip":
        out = export_entries(state, _oc_entries(vc.depth, tc.depth))
        out.update({"visual.class_embedding": cls, "visual.positional_embedding": pos})
        cfg = {"embed_dim": model.proj_a.out_features, "quick_gelu": vc.mlp == "mlp_quick_gelu",
               "vision_cfg": {"layers": vc.depth, "width": vc.dim, "head_width": vc.dim // vc.num_heads,
                              "mlp_ratio": hidden[0] / vc.dim, "patch_size": it.patch_size,
                              "image_size": it.image_size[0]},
               "text_cfg": {"context_length": tt.max_len, "vocab_size": tt.vocab_size, "width": tc.dim,
                            "heads": tc.num_heads, "layers": tc.depth, "mlp_ratio": hidden[1] / tc.dim,
                            "pad_id": tt.pad_id}}
        return write_folder(out_dir, out, {"model_cfg": cfg}, weights=OPEN_CLIP_WEIGHTS, config_name=OPEN_CLIP_CONFIG)
    out = export_entries(state, _hf_entries(vc.depth, tc.depth))
    out.update({"vision_model.embeddings.class_embedding": cls,
                "vision_model.embeddings.position_embedding.weight": pos})
    act = "quick_gelu" if vc.mlp == "mlp_quick_gelu" else "gelu"
    config = {"model_type": "clip", "architectures": ["CLIPModel"], "projection_dim": model.proj_a.out_features,
              "logit_scale_init_value": float(model.logit_scale.detach()),
              "vision_config": {"hidden_size": vc.dim, "num_hidden_layers": vc.depth, "num_attention_heads": vc.num_heads,
                                "intermediate_size": hidden[0], "image_size": it.image_size[0],
                                "patch_size": it.patch_size, "num_channels": it.in_chans, "hidden_act": act,
                                "layer_norm_eps": vc.norm_eps},
              "text_config": {"hidden_size": tc.dim, "num_hidden_layers": tc.depth, "num_attention_heads": tc.num_heads,
                              "intermediate_size": hidden[1], "vocab_size": tt.vocab_size,
                              "max_position_embeddings": tt.max_len, "hidden_act": act, "layer_norm_eps": tc.norm_eps,
                              "pad_token_id": tt.pad_id}}
    if eos_token_id is not None:
        config["text_config"]["eos_token_id"] = eos_token_id  # type: ignore[index]
    return write_folder(out_dir, out, config)



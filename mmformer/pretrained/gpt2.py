"""GPT-2 (Hugging Face ``GPT2LMHeadModel``, ``model_type: gpt2``) → :class:`~mmformer.models.causal_lm.CausalLM`,
and back.

GPT-2 is a pre-norm causal encoder with learned absolute positions, tanh-GELU MLPs and an LM head tied
to the token embedding. Its ``Conv1D`` layers store ``(in, out)`` weights, transposed here.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from torch import Tensor

from mmformer.backbone import BackboneConfig
from mmformer.models import CausalLMConfig, build
from mmformer.models.causal_lm import CausalLM
from mmformer.pretrained.common import (
    CheckpointError,
    Entry,
    convert_entries,
    export_entries,
    field,
    mlp_ratio,
    tokenizer_spec,
    write_folder,
)
from mmformer.pretrained.vit import HF_ACTS, hf_mlp
from mmformer.tokenizers.text import TextTokenizer

_UNSUPPORTED = {"scale_attn_by_inverse_layer_idx": True, "reorder_and_upcast_attn": True,
                "scale_attn_weights": False, "add_cross_attention": True}


def _entries(depth: int) -> list[Entry]:
    e: list[Entry] = [("tokenizer.embed.weight", ("transformer.wte.weight",), ""),
                      ("tokenizer.pos.weight", ("transformer.wpe.weight",), "")]
    for i in range(depth):
        h, m = f"transformer.h.{i}.", f"backbone.blocks.{i}."
        e += [(f"{m}attn.qkv.weight", (f"{h}attn.c_attn.weight",), "T"), (f"{m}attn.qkv.bias", (f"{h}attn.c_attn.bias",), ""),
              (f"{m}attn.proj.weight", (f"{h}attn.c_proj.weight",), "T"), (f"{m}attn.proj.bias", (f"{h}attn.c_proj.bias",), ""),
              (f"{m}mlp.fc1.weight", (f"{h}mlp.c_fc.weight",), "T"), (f"{m}mlp.fc1.bias", (f"{h}mlp.c_fc.bias",), ""),
              (f"{m}mlp.fc2.weight", (f"{h}mlp.c_proj.weight",), "T"), (f"{m}mlp.fc2.bias", (f"{h}mlp.c_proj.bias",), "")]
        e += [(f"{m}{n}.{p}", (f"{h}{o}.{p}",), "") for n, o in (("norm1", "ln_1"), ("norm2", "ln_2"))
              for p in ("weight", "bias")]
    e += [(f"backbone.norm.{p}", (f"transformer.ln_f.{p}",), "") for p in ("weight", "bias")]
    return e


def model_config(config: dict[str, Any]) -> CausalLMConfig:
    """The :class:`~mmformer.models.CausalLMConfig` of a GPT-2 config."""
    for name, bad in _UNSUPPORTED.items():
        if config.get(name, not bad) == bad:
            raise CheckpointError(f"config.json: {name}={bad} is not supported for GPT-2")
    if not field(config, "tie_word_embeddings", True):
        raise CheckpointError("config.json: tie_word_embeddings=false is not supported for GPT-2")
    dim, vocab = field(config, "n_embd"), field(config, "vocab_size")
    pad = config.get("pad_token_id")
    pad = pad if pad is not None else config.get("eos_token_id") or 0  # GPT-2 has no pad token: eos stands in
    tok = tokenizer_spec(TextTokenizer, vocab_size=vocab, max_len=field(config, "n_positions"), positions="learned",
                         pad_id=pad)
    backbone = BackboneConfig(
        dim=dim, depth=field(config, "n_layer"), num_heads=field(config, "n_head"),
        mlp_ratio=mlp_ratio(dim, config.get("n_inner") or 4 * dim), mlp=hf_mlp(config, "activation_function"),
        norm_eps=field(config, "layer_norm_epsilon", 1e-5), causal=True)
    return CausalLMConfig(tok, backbone, tie_embeddings=True)


def build_model(config: dict[str, Any]) -> CausalLM:
    """An untrained CausalLM shaped like a GPT-2 config: ``build(model_config(config))``."""
    return build(model_config(config))  # type: ignore[return-value]


def convert_state_dict(peer_state: dict[str, Tensor], config: dict[str, Any]) -> dict[str, Tensor]:
    """GPT-2 tensors → the CausalLM's (``lm_head.weight`` is the tied embedding, so it is not read)."""
    state = {k if k.startswith(("transformer.", "lm_head.")) else f"transformer.{k}": v for k, v in peer_state.items()}
    out = convert_entries(state, _entries(field(config, "n_layer")), "the GPT-2 checkpoint",
                          ignore=("lm_head.weight", "*.attn.bias", "*.attn.masked_bias"))
    out["lm_head.weight"] = out["tokenizer.embed.weight"]
    return out


def export(model: CausalLM, out_dir: str | Path) -> Path:
    """Writes ``model`` as a ``GPT2LMHeadModel`` folder (``model.safetensors`` + ``config.json``)."""
    tok, c = model.tokenizer, model.backbone.config
    if tok.kind != "learned" or c.norm_position != "pre" or model.lm_head.weight is not tok.embed.weight:
        raise ValueError("only pre-norm causal LMs with learned positions and a tied head export as GPT-2")
    if hasattr(tok, "norm") or tok.scale != 1.0 or model.lm_head.bias is not None or c.mlp not in HF_ACTS.values():
        raise ValueError("GPT-2 has no embedding norm, embedding scale or logit bias, and a named MLP activation")
    act = {"gelu": "gelu", "mlp_gelu_tanh": "gelu_new", "mlp_quick_gelu": "quick_gelu", "mlp_relu": "relu",
           "mlp_silu": "silu"}[c.mlp]  # type: ignore[index]
    config = {"model_type": "gpt2", "architectures": ["GPT2LMHeadModel"], "vocab_size": tok.vocab_size,
              "n_positions": tok.max_len, "n_embd": c.dim, "n_layer": c.depth, "n_head": c.num_heads,
              "n_inner": model.backbone.blocks[0].mlp.fc1.out_features, "activation_function": act,
              "layer_norm_epsilon": c.norm_eps, "tie_word_embeddings": True, "pad_token_id": tok.pad_id}
    state = {k: v for k, v in model.state_dict().items() if k != "lm_head.weight"}
    return write_folder(out_dir, export_entries(state, _entries(c.depth)), config)


def special_ids(config: dict[str, Any]) -> dict[str, int]:
    """``bos_id`` / ``eos_id`` / ``pad_id`` for :class:`mmformer.decoding.GenerationConfig` (GPT-2 reuses eos)."""
    eos = field(config, "eos_token_id")
    return {"bos_id": field(config, "bos_token_id", eos), "eos_id": eos, "pad_id": field(config, "pad_token_id", eos)}

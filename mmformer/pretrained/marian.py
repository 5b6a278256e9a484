"""Marian translation models (Hugging Face ``MarianMTModel``, ``model_type: marian``) →
:class:`~mmformer.models.seq2seq.Seq2Seq`, and back.

Marian is a post-norm encoder–decoder with sinusoidal positions, embeddings scaled by sqrt(D) (Opus-MT's
``scale_embedding``), SiLU (swish) MLPs, one embedding shared by encoder, decoder and output projection, and a logit bias.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from torch import Tensor

from mmformer.backbone import BackboneConfig
from mmformer.models import Seq2SeqConfig, build
from mmformer.models.seq2seq import Seq2Seq
from mmformer.pretrained.common import (
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
from mmformer.tokenizers.text import TextTokenizer

_ACT_NAMES = {"gelu": "gelu", "mlp_gelu_tanh": "gelu_new", "mlp_relu": "relu", "mlp_silu": "swish"}


def _layer(h: str, m: str, cross: bool) -> list[Entry]:
    e: list[Entry] = []
    for p in ("weight", "bias"):
        e += [(f"{m}attn.qkv.{p}", tuple(f"{h}self_attn.{n}_proj.{p}" for n in "qkv"), ""),
              (f"{m}attn.proj.{p}", (f"{h}self_attn.out_proj.{p}",), ""),
              (f"{m}norm1.{p}", (f"{h}self_attn_layer_norm.{p}",), ""),
              (f"{m}mlp.fc1.{p}", (f"{h}fc1.{p}",), ""), (f"{m}mlp.fc2.{p}", (f"{h}fc2.{p}",), ""),
              (f"{m}norm2.{p}", (f"{h}final_layer_norm.{p}",), "")]
        if cross:
            e += [(f"{m}cross_attn.q.{p}", (f"{h}encoder_attn.q_proj.{p}",), ""),
                  (f"{m}cross_attn.kv.{p}", tuple(f"{h}encoder_attn.{n}_proj.{p}" for n in "kv"), ""),
                  (f"{m}cross_attn.proj.{p}", (f"{h}encoder_attn.out_proj.{p}",), ""),
                  (f"{m}norm_cross.{p}", (f"{h}encoder_attn_layer_norm.{p}",), "")]
    return e


def _entries(enc_depth: int, dec_depth: int) -> list[Entry]:
    e: list[Entry] = [("target_tokenizer.embed.weight", ("model.shared.weight",), "")]
    for i in range(enc_depth):
        e += _layer(f"model.encoder.layers.{i}.", f"encoder.blocks.{i}.", False)
    for i in range(dec_depth):
        e += _layer(f"model.decoder.layers.{i}.", f"decoder.blocks.{i}.", True)
    return e


def _check(config: dict[str, Any]) -> None:
    for name, ok in (("normalize_before", False), ("normalize_embedding", False), ("add_final_layer_norm", False),
                     ("share_encoder_decoder_embeddings", True),
                     ("tie_word_embeddings", True)):
        if config.get(name, ok) != ok:
            raise CheckpointError(f"config.json: {name}={config[name]} is not supported for Marian (only {ok})")
    if config.get("decoder_vocab_size") not in (None, field(config, "vocab_size")):
        raise CheckpointError("config.json: decoder_vocab_size differs from vocab_size (separate vocabularies) "
                              "is not supported")


def model_config(config: dict[str, Any]) -> Seq2SeqConfig:
    """The :class:`~mmformer.models.Seq2SeqConfig` of a Marian config: one table for source, target and output,
    as Marian's ``shared``."""
    _check(config)
    dim, vocab, max_len = field(config, "d_model"), field(config, "vocab_size"), field(config, "max_position_embeddings")
    pad, scale = field(config, "pad_token_id"), bool(config.get("scale_embedding", False))
    mlp = hf_mlp(config, "activation_function")

    def stack(prefix: str, **more: Any) -> BackboneConfig:
        return BackboneConfig(dim=dim, depth=field(config, f"{prefix}_layers"),
                              num_heads=field(config, f"{prefix}_attention_heads"),
                              mlp_ratio=mlp_ratio(dim, field(config, f"{prefix}_ffn_dim")), mlp=mlp,
                              norm_eps=1e-5, norm_position="post", **more)

    source = tokenizer_spec(TextTokenizer, vocab_size=vocab, max_len=max_len, positions="sinusoidal", pad_id=pad,
                            scale=scale)
    return Seq2SeqConfig(source, vocab, stack("encoder"), stack("decoder", causal=True, memory_dim=dim),
                         target_positions="sinusoidal", target_scale=scale, max_target_len=max_len,
                         tie_embeddings=True, share_source_embedding=True, logits_bias=True, target_pad_id=pad)


def build_model(config: dict[str, Any]) -> Seq2Seq:
    """An untrained Seq2Seq shaped like a Marian config: ``build(model_config(config))``."""
    return build(model_config(config))  # type: ignore[return-value]


def convert_state_dict(peer_state: dict[str, Tensor], config: dict[str, Any]) -> dict[str, Tensor]:
    """Marian tensors → the Seq2Seq's (the sinusoidal tables are recomputed, not read)."""
    state = dict(peer_state)
    bias = take(state, "final_logits_bias")
    if "model.shared.weight" not in state and "model.encoder.embed_tokens.weight" in state:
        state["model.shared.weight"] = state.pop("model.encoder.embed_tokens.weight")  # tied copies may be dropped
    out = convert_entries(state, _entries(field(config, "encoder_layers"), field(config, "decoder_layers")),
                          "the Marian checkpoint",
                          ignore=("*.embed_positions.weight", "model.encoder.embed_tokens.weight",
                                  "model.decoder.embed_tokens.weight", "lm_head.weight"))
    shared = out["target_tokenizer.embed.weight"]
    out.update({"source_tokenizer.embed.weight": shared, "lm_head.weight": shared, "lm_head.bias": bias.reshape(-1)})
    return out


def export(model: Seq2Seq, out_dir: str | Path, decoder_start_token_id: int | None = None) -> Path:
    """Writes ``model`` as a ``MarianMTModel`` folder (``model.safetensors`` + ``config.json``)."""
    src, tgt, enc, dec = model.source_tokenizer, model.target_tokenizer, model.encoder.config, model.decoder.config
    if not isinstance(src, TextTokenizer) or src.embed.weight is not tgt.embed.weight or \
            model.lm_head.weight is not tgt.embed.weight:
        raise ValueError("Marian shares one embedding between source, target and output: this model does not")
    if (src.kind, tgt.kind) != ("sinusoidal", "sinusoidal") or enc.norm_position != "post" or dec.norm_position != "post":
        raise ValueError("Marian needs post-norm stacks with sinusoidal positions")
    if enc.mlp not in _ACT_NAMES or enc.mlp != dec.mlp or model.lm_head.bias is None:
        raise ValueError(f"MLP {enc.mlp!r} / {dec.mlp!r} or a missing logit bias has no Marian equivalent")
    state = export_entries(model.state_dict(), _entries(enc.depth, dec.depth))
    state["final_logits_bias"] = model.lm_head.bias.detach().reshape(1, -1)
    config = {"model_type": "marian", "architectures": ["MarianMTModel"], "vocab_size": tgt.vocab_size,
              "decoder_vocab_size": tgt.vocab_size, "d_model": enc.dim, "encoder_layers": enc.depth,
              "decoder_layers": dec.depth, "encoder_attention_heads": enc.num_heads,
              "decoder_attention_heads": dec.num_heads,
              "encoder_ffn_dim": model.encoder.blocks[0].mlp.fc1.out_features,
              "decoder_ffn_dim": model.decoder.blocks[0].mlp.fc1.out_features,
              "activation_function": _ACT_NAMES[enc.mlp], "max_position_embeddings": tgt.max_len,
              "scale_embedding": tgt.scale != 1.0, "pad_token_id": tgt.pad_id,
              "decoder_start_token_id": tgt.pad_id if decoder_start_token_id is None else decoder_start_token_id,
              "share_encoder_decoder_embeddings": True, "tie_word_embeddings": True}
    return write_folder(out_dir, state, config)


def special_ids(config: dict[str, Any]) -> dict[str, int]:
    """``bos_id`` (the decoder start) / ``eos_id`` / ``pad_id`` for :class:`mmformer.decoding.GenerationConfig`."""
    pad = field(config, "pad_token_id")
    return {"bos_id": field(config, "decoder_start_token_id", pad), "eos_id": field(config, "eos_token_id"),
            "pad_id": pad}

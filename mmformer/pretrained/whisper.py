"""Whisper (Hugging Face ``WhisperForConditionalGeneration``, ``model_type: whisper``) →
:class:`~mmformer.models.seq2seq.Seq2Seq` with a :class:`~mmformer.tokenizers.whisper_audio.WhisperAudioTokenizer`
source (its log-mel front end), and back.

Whisper is a pre-norm encoder–decoder. Its key projections have no bias; mmformer's fused projections
carry a zero key bias instead, which is exact and stays exact under training: a key bias adds the same
``q · b`` to every score of a query, which softmax ignores (its gradient is zero), so export drops it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
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
    tokenizer_spec,
    write_folder,
)
from mmformer.pretrained.vit import hf_mlp
from mmformer.tokenizers.whisper_audio import WhisperAudioTokenizer

_WB = ("weight", "bias")


def _layer(h: str, m: str, cross: bool) -> list[Entry]:
    e: list[Entry] = []
    for p in _WB:
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
    e: list[Entry] = [("target_tokenizer.embed.weight", ("model.decoder.embed_tokens.weight",), ""),
                      ("target_tokenizer.pos.weight", ("model.decoder.embed_positions.weight",), ""),
                      ("source_tokenizer.pos", ("model.encoder.embed_positions.weight",), "")]
    e += [(f"source_tokenizer.{c}.{p}", (f"model.encoder.{c}.{p}",), "") for c in ("conv1", "conv2") for p in _WB]
    e += [(f"encoder.norm.{p}", (f"model.encoder.layer_norm.{p}",), "") for p in _WB]
    e += [(f"decoder.norm.{p}", (f"model.decoder.layer_norm.{p}",), "") for p in _WB]
    for i in range(enc_depth):
        e += _layer(f"model.encoder.layers.{i}.", f"encoder.blocks.{i}.", False)
    for i in range(dec_depth):
        e += _layer(f"model.decoder.layers.{i}.", f"decoder.blocks.{i}.", True)
    return e


def _key_biases(enc_depth: int, dec_depth: int) -> list[tuple[str, str]]:
    """(key-projection bias name, value-projection bias name): the zero key bias takes the value's shape."""
    out = [(f"model.encoder.layers.{i}.self_attn.{{}}_proj.bias",) * 2 for i in range(enc_depth)]
    for i in range(dec_depth):
        out += [(f"model.decoder.layers.{i}.{a}.{{}}_proj.bias",) * 2 for a in ("self_attn", "encoder_attn")]
    return [(k.format("k"), v.format("v")) for k, v in out]


def model_config(config: dict[str, Any]) -> Seq2SeqConfig:
    """The :class:`~mmformer.models.Seq2SeqConfig` of a Whisper config (a WhisperAudioTokenizer source)."""
    if field(config, "scale_embedding", False):
        raise CheckpointError("config.json: scale_embedding=true is not supported for Whisper")
    dim, mlp = field(config, "d_model"), hf_mlp(config, "activation_function")

    def stack(prefix: str, **more: Any) -> BackboneConfig:
        return BackboneConfig(dim=dim, depth=field(config, f"{prefix}_layers"),
                              num_heads=field(config, f"{prefix}_attention_heads"),
                              mlp_ratio=mlp_ratio(dim, field(config, f"{prefix}_ffn_dim")), mlp=mlp, norm_eps=1e-5,
                              **more)

    n_pos = field(config, "max_source_positions")
    audio = tokenizer_spec(WhisperAudioTokenizer, n_mels=field(config, "num_mel_bins"), max_positions=n_pos,
                           chunk_seconds=n_pos * 2 * 160 / 16000)  # 2 mel frames (hop 160 at 16 kHz) per position
    return Seq2SeqConfig(audio, field(config, "vocab_size"), stack("encoder"),
                         stack("decoder", causal=True, memory_dim=dim), target_positions="learned",
                         max_target_len=field(config, "max_target_positions"), tie_embeddings=True,
                         target_pad_id=field(config, "pad_token_id"))


def build_model(config: dict[str, Any]) -> Seq2Seq:
    """An untrained Seq2Seq shaped like a Whisper config: ``build(model_config(config))``."""
    return build(model_config(config))  # type: ignore[return-value]


def convert_state_dict(peer_state: dict[str, Tensor], config: dict[str, Any]) -> dict[str, Tensor]:
    """Whisper tensors → the Seq2Seq's; missing key biases become zeros (see the module doc)."""
    depths = field(config, "encoder_layers"), field(config, "decoder_layers")
    state = dict(peer_state)
    for k, v in _key_biases(*depths):
        if k not in state and v in state:
            state[k] = torch.zeros_like(state[v])
    out = convert_entries(state, _entries(*depths), "the Whisper checkpoint", ignore=("proj_out.weight",))
    out["lm_head.weight"] = out["target_tokenizer.embed.weight"]
    return out


def export(model: Seq2Seq, out_dir: str | Path, decoder_start_token_id: int = 50258, eos_token_id: int = 50257) -> Path:
    """Writes ``model`` as a ``WhisperForConditionalGeneration`` folder (the key biases are dropped)."""
    src, tgt, enc, dec = model.source_tokenizer, model.target_tokenizer, model.encoder.config, model.decoder.config
    if not isinstance(src, WhisperAudioTokenizer) or tgt.kind != "learned" or enc.norm_position != "pre":
        raise ValueError("only pre-norm models with a WhisperAudioTokenizer and learned target positions export "
                         "as Whisper")
    if model.lm_head.weight is not tgt.embed.weight or model.lm_head.bias is not None or enc.mlp != "gelu":
        raise ValueError("Whisper ties its output projection to the embedding, with no bias, and uses GELU MLPs")
    state = export_entries(model.state_dict(), _entries(enc.depth, dec.depth))
    for k, _ in _key_biases(enc.depth, dec.depth):
        del state[k]
    config = {"model_type": "whisper", "architectures": ["WhisperForConditionalGeneration"],
              "vocab_size": tgt.vocab_size, "num_mel_bins": src.n_mels, "d_model": enc.dim,
              "encoder_layers": enc.depth, "decoder_layers": dec.depth, "encoder_attention_heads": enc.num_heads,
              "decoder_attention_heads": dec.num_heads,
              "encoder_ffn_dim": model.encoder.blocks[0].mlp.fc1.out_features,
              "decoder_ffn_dim": model.decoder.blocks[0].mlp.fc1.out_features,
              "max_source_positions": src.pos.shape[0], "max_target_positions": tgt.max_len,
              "activation_function": "gelu", "pad_token_id": tgt.pad_id, "eos_token_id": eos_token_id,
              "decoder_start_token_id": decoder_start_token_id, "tie_word_embeddings": True}
    return write_folder(out_dir, state, config)


def special_ids(config: dict[str, Any]) -> dict[str, int]:
    """``bos_id`` (the decoder start, ``<|startoftranscript|>``) / ``eos_id`` / ``pad_id`` for
    :class:`mmformer.decoding.GenerationConfig`. Whisper's language, task and timestamp tokens are not
    forced: decode from a start token of your choice (``bos_id``) or fine-tune."""
    eos = field(config, "eos_token_id")
    return {"bos_id": field(config, "decoder_start_token_id"), "eos_id": eos, "pad_id": field(config, "pad_token_id", eos)}

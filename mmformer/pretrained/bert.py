"""BERT (Hugging Face ``BertForMaskedLM``, ``model_type: bert``) → :class:`~mmformer.models.masked_lm.MaskedLM`,
and back.

BERT is a post-norm encoder whose embeddings (token + position + token type) pass a LayerNorm. mmformer
text has one segment: the type-0 embedding is folded into every row of the position table (exact for
single-segment inputs, ``token_type_ids`` all 0); export writes it back as type 0 (the other types zero).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from mmformer.backbone import BackboneConfig
from mmformer.models import MaskedLMConfig, build
from mmformer.models.masked_lm import MaskedLM
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
from mmformer.pretrained.vit import HF_ACTS, hf_mlp
from mmformer.tokenizers.text import TextTokenizer

TYPES = "bert.embeddings.token_type_embeddings.weight"


def _entries(depth: int) -> list[Entry]:
    e: list[Entry] = [("tokenizer.embed.weight", ("bert.embeddings.word_embeddings.weight",), ""),
                      ("tokenizer.pos.weight", ("bert.embeddings.position_embeddings.weight",), "")]
    e += [(f"tokenizer.norm.{p}", (f"bert.embeddings.LayerNorm.{p}",), "") for p in ("weight", "bias")]
    for i in range(depth):
        h, m = f"bert.encoder.layer.{i}.", f"backbone.blocks.{i}."
        for p in ("weight", "bias"):
            e += [(f"{m}attn.qkv.{p}", tuple(f"{h}attention.self.{n}.{p}" for n in ("query", "key", "value")), ""),
                  (f"{m}attn.proj.{p}", (f"{h}attention.output.dense.{p}",), ""),
                  (f"{m}norm1.{p}", (f"{h}attention.output.LayerNorm.{p}",), ""),
                  (f"{m}mlp.fc1.{p}", (f"{h}intermediate.dense.{p}",), ""),
                  (f"{m}mlp.fc2.{p}", (f"{h}output.dense.{p}",), ""),
                  (f"{m}norm2.{p}", (f"{h}output.LayerNorm.{p}",), "")]
    for p in ("weight", "bias"):
        e += [(f"head.dense.{p}", (f"cls.predictions.transform.dense.{p}",), ""),
              (f"head.norm.{p}", (f"cls.predictions.transform.LayerNorm.{p}",), "")]
    e += [("head.decoder.bias", ("cls.predictions.bias",), "")]
    return e


def model_config(config: dict[str, Any]) -> MaskedLMConfig:
    """The :class:`~mmformer.models.MaskedLMConfig` of a BERT config."""
    if field(config, "position_embedding_type", "absolute") != "absolute":
        raise CheckpointError(f"config.json: position_embedding_type={config['position_embedding_type']!r} is not "
                              f"supported (only 'absolute')")
    dim, eps = field(config, "hidden_size"), field(config, "layer_norm_eps", 1e-12)
    tok = tokenizer_spec(TextTokenizer, vocab_size=field(config, "vocab_size"),
                         max_len=field(config, "max_position_embeddings"), positions="learned",
                         pad_id=field(config, "pad_token_id", 0), embed_norm=True, norm_eps=eps)
    mlp = hf_mlp(config)
    backbone = BackboneConfig(
        dim=dim, depth=field(config, "num_hidden_layers"), num_heads=field(config, "num_attention_heads"),
        mlp_ratio=mlp_ratio(dim, field(config, "intermediate_size")), mlp=mlp, norm_eps=eps, norm_position="post")
    return MaskedLMConfig(tok, backbone, act=mlp.removeprefix("mlp_"), norm_eps=eps)


def build_model(config: dict[str, Any]) -> MaskedLM:
    """An untrained MaskedLM shaped like a BERT config: ``build(model_config(config))``."""
    return build(model_config(config))  # type: ignore[return-value]


def convert_state_dict(peer_state: dict[str, Tensor], config: dict[str, Any]) -> dict[str, Tensor]:
    """BERT tensors → the MaskedLM's; the type-0 embedding is folded into the positions."""
    # Original Google checkpoints (bert-base-uncased) name LayerNorm parameters gamma/beta.
    state = {k.removesuffix(".gamma") + ".weight" if k.endswith(".gamma") else
             k.removesuffix(".beta") + ".bias" if k.endswith(".beta") else k: v for k, v in peer_state.items()}
    types = take(state, TYPES)
    out = convert_entries(state, _entries(field(config, "num_hidden_layers")), "the BERT checkpoint",
                          ignore=("*.position_ids", "*.token_type_ids", "cls.predictions.decoder.*",
                                  "bert.pooler.*", "cls.seq_relationship.*"))  # pretraining's NSP head
    out["tokenizer.pos.weight"] = out["tokenizer.pos.weight"] + types[0]
    out["head.decoder.weight"] = out["tokenizer.embed.weight"]
    return out


def export(model: MaskedLM, out_dir: str | Path, type_vocab_size: int = 2) -> Path:
    """Writes ``model`` as a ``BertForMaskedLM`` folder; token type 0 is zero, the positions carry it."""
    tok, c = model.tokenizer, model.backbone.config
    if tok.kind != "learned" or not hasattr(tok, "norm") or c.norm_position != "post" or tok.scale != 1.0:
        raise ValueError("only post-norm encoders with learned positions and an embedding norm export as BERT")
    act = {"gelu": "gelu", "mlp_gelu_tanh": "gelu_new", "mlp_quick_gelu": "quick_gelu", "mlp_relu": "relu",
           "mlp_silu": "silu"}
    if c.mlp not in act or c.mlp not in HF_ACTS.values():
        raise ValueError(f"MLP {c.mlp!r} has no BERT hidden_act")
    state = {k: v for k, v in model.state_dict().items() if k != "head.decoder.weight"}
    out = export_entries(state, _entries(c.depth))
    out[TYPES] = torch.zeros(type_vocab_size, c.dim)
    config = {"model_type": "bert", "architectures": ["BertForMaskedLM"], "vocab_size": tok.vocab_size,
              "hidden_size": c.dim, "num_hidden_layers": c.depth, "num_attention_heads": c.num_heads,
              "intermediate_size": model.backbone.blocks[0].mlp.fc1.out_features, "hidden_act": act[c.mlp],
              "max_position_embeddings": tok.max_len, "type_vocab_size": type_vocab_size,
              "layer_norm_eps": c.norm_eps, "pad_token_id": tok.pad_id, "tie_word_embeddings": True}
    return write_folder(out_dir, out, config)

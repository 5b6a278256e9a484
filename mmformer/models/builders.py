"""``build(cfg) -> nn.Module`` for every model config of :mod:`mmformer.models.config`, and configs to and from
plain dicts (``{type: <config class name>, <field>: <value>...}``, nested backbones and tokenizers as dicts), so
that an export's ``config.yaml`` rebuilds its model with no Lightning.

Each builder draws the initial weights in the order the task modules always did (a seeded run gives the same
weights): see the comment on each.
"""

from __future__ import annotations

import dataclasses
import typing
from typing import Any, Mapping

from torch import nn

from mmformer.backbone import BackboneConfig, Decoder, Encoder
from mmformer.heads import ClassificationHead
from mmformer.models.causal_lm import CausalLM
from mmformer.models.classifier import Classifier
from mmformer.models.config import (CONFIG_TYPES, CausalLMConfig, ClassifierConfig, ContrastiveConfig,
                                    DecisionTransformerConfig, MaskedLMConfig, ModelConfig, MultiTaskConfig,
                                    PrefixLMConfig, Seq2SeqConfig, TokenizerSpec, make_tokenizer)
from mmformer.models.data_fields import unset_fields
from mmformer.models.decision_transformer import DecisionTransformer
from mmformer.models.dual_encoder import ContrastiveModel
from mmformer.models.masked_lm import MaskedLM
from mmformer.models.multitask import MultiTaskModel
from mmformer.models.prefix_lm import PrefixLM
from mmformer.models.seq2seq import Seq2Seq
from mmformer.tokenizers.text import TextTokenizer


def _classifier(cfg: ClassifierConfig) -> Classifier:
    b = cfg.backbone  # tokenizer, encoder, head
    tokenizer, encoder = make_tokenizer(cfg.tokenizer, b.dim), Encoder(b)
    if cfg.fc_norm:  # the norm moves after pooling: the encoder ends without one (no backbone.norm keys)
        encoder.norm = nn.Identity()
    return Classifier(tokenizer, encoder, ClassificationHead(b.dim, cfg.num_classes, cfg.pool, cfg.head_dropout,
                                                             num_heads=b.num_heads, pool_norm=cfg.fc_norm))


def _seq2seq(cfg: Seq2SeqConfig) -> Seq2Seq:
    enc, dec = cfg.backbone, cfg.decoder_config()  # target embedding, source tokenizer, encoder, decoder, heads
    if dec.memory_dim not in (None, enc.dim):
        raise ValueError(f"decoder.memory_dim={dec.memory_dim} but the encoder's dim is {enc.dim}")
    target = TextTokenizer(dec.dim, cfg.target_vocab_size, max_len=cfg.max_target_len, positions=cfg.target_positions,
                           scale=cfg.target_scale, init_std=cfg.target_init_std, pad_id=cfg.target_pad_id)
    model = Seq2Seq(make_tokenizer(cfg.source_tokenizer, enc.dim), Encoder(enc), target, Decoder(dec),
                    cfg.tie_embeddings, ctc_vocab_size=cfg.ctc_vocab_size, logits_bias=cfg.logits_bias)
    if cfg.share_source_embedding:
        if enc.dim != dec.dim:
            raise ValueError("share_source_embedding needs equal encoder/decoder widths")
        _share_table(model.source_tokenizer, target, cfg.target_scale, "share_source_embedding", "source_tokenizer",
                     "target_scale")
    return model


def _share_table(tokenizer: object, text: TextTokenizer, scale: bool, option: str, tok_name: str,
                 scale_name: str) -> None:
    """An input text tokenizer reads with ``text``'s embedding table (one table for input, text and output): it must
    be a TextTokenizer over the same vocabulary, scaled alike (``option`` and the other names are for the errors)."""
    if not isinstance(tokenizer, TextTokenizer) or tokenizer.vocab_size != text.vocab_size:
        raise ValueError(f"{option} needs a TextTokenizer {tok_name.removesuffix('_tokenizer')} over the text's "
                         f"vocabulary (vocab_size={text.vocab_size}), got {type(tokenizer).__name__}")
    if (tokenizer.scale != 1.0) != scale:
        raise ValueError(f"{option}: the {tok_name.replace('_', ' ')}'s scale={tokenizer.scale != 1.0} but "
                         f"{scale_name}={scale}; one shared table needs one scale: set both "
                         f"(model.init_args.model.{tok_name}.init_args.scale and model.init_args.model.{scale_name})")
    tokenizer.embed.weight = text.embed.weight


def _prefix_lm(cfg: PrefixLMConfig) -> PrefixLM:
    b = cfg.backbone  # text embedding, prefix tokenizer, backbone, heads
    text = TextTokenizer(b.dim, cfg.vocab_size, max_len=cfg.max_len, positions=cfg.text_positions,
                         scale=cfg.text_scale, init_std=cfg.text_init_std)
    prefix = make_tokenizer(cfg.prefix_tokenizer, b.dim) if cfg.prefix_tokenizer is not None else None
    model = PrefixLM(text, Encoder(b), prefix, cfg.tie_embeddings, cfg.logits_bias, ctc_vocab_size=cfg.ctc_vocab_size)
    if cfg.share_prefix_embedding:
        _share_table(prefix, text, cfg.text_scale, "share_prefix_embedding", "prefix_tokenizer", "text_scale")
    return model


def _text_tokenizer(cfg: CausalLMConfig | MaskedLMConfig) -> TextTokenizer:
    tok = make_tokenizer(cfg.tokenizer, cfg.backbone.dim)
    if not isinstance(tok, TextTokenizer):
        raise TypeError(f"{type(cfg).__name__}.tokenizer must build a TextTokenizer, got {type(tok).__name__}")
    return tok


def _contrastive(cfg: ContrastiveConfig) -> ContrastiveModel:
    a, b = cfg.backbone, cfg.backbone_b  # encoder a, tokenizer a, tokenizer b, encoder b, pools, projections
    encoder_a = Encoder(a)
    return ContrastiveModel(make_tokenizer(cfg.tokenizer_a, a.dim), make_tokenizer(cfg.tokenizer_b, (b or a).dim),
                            encoder_a, Encoder(b) if b is not None else None, cfg.pool_a, cfg.pool_b, cfg.embed_dim,
                            a.num_heads, cfg.init_temperature)


def _multitask(cfg: MultiTaskConfig) -> MultiTaskModel:
    # every child model whole (its own backbone is drawn, then replaced), then the shared backbone: the order in
    # which the children tasks and MultiTaskTask build theirs
    models = {name: build(child) for name, child in cfg.models.items()}
    return MultiTaskModel(Encoder(dataclasses.replace(cfg.backbone, causal=True)), models)


def build(cfg: ModelConfig) -> nn.Module:
    """The plain model a config describes, freshly initialized (torch's global generator draws the weights).

    Raises ValueError when a size the data gives is still unset (:func:`~mmformer.models.data_fields.unset_fields`).
    """
    missing = unset_fields(cfg) if isinstance(cfg, CONFIG_TYPES) else []
    if missing:
        raise ValueError(f"{type(cfg).__name__} cannot be built: {', '.join(missing)} not set. A task fills these from "
                         f"its data (its DataModule's spec) before building; set them to build the model by hand")
    if isinstance(cfg, ClassifierConfig):
        return _classifier(cfg)
    if isinstance(cfg, Seq2SeqConfig):
        return _seq2seq(cfg)
    if isinstance(cfg, PrefixLMConfig):
        return _prefix_lm(cfg)
    if isinstance(cfg, CausalLMConfig):
        return CausalLM(_text_tokenizer(cfg), Encoder(cfg.backbone), cfg.tie_embeddings, cfg.logits_bias)
    if isinstance(cfg, MaskedLMConfig):
        return MaskedLM(_text_tokenizer(cfg), Encoder(cfg.backbone), cfg.act, cfg.norm_eps)
    if isinstance(cfg, ContrastiveConfig):
        return _contrastive(cfg)
    if isinstance(cfg, DecisionTransformerConfig):
        return DecisionTransformer(make_tokenizer(cfg.tokenizer, cfg.backbone.dim), Encoder(cfg.backbone),
                                   cfg.context, cfg.head_dropout)
    if isinstance(cfg, MultiTaskConfig):
        return _multitask(cfg)
    raise TypeError(f"build() takes a model config ({', '.join(t.__name__ for t in CONFIG_TYPES)}), "
                    f"got {type(cfg).__name__}")


# ---- to and from plain dicts ------------------------------------------------------------------------------
_BY_NAME = {t.__name__: t for t in CONFIG_TYPES}
# config class name → {field name an older export wrote: its current name} (export version 3 wrote Seq2SeqConfig's
# encoder as ``encoder``)
_RENAMED_FIELDS: dict[str, dict[str, str]] = {"Seq2SeqConfig": {"encoder": "backbone"}}


def _plain(value: Any, where: str) -> Any:
    if isinstance(value, TokenizerSpec):
        return {"class_path": value.class_path, "init_args": _plain(value.init_args, where)}
    if isinstance(value, BackboneConfig):
        return {f.name: _plain(getattr(value, f.name), where) for f in dataclasses.fields(value)}
    if isinstance(value, CONFIG_TYPES):
        return config_to_dict(value)
    if isinstance(value, Mapping):
        return {str(k): _plain(v, f"{where}.{k}") for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v, where) for v in value]
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    raise ValueError(f"{where} is a {type(value).__name__}, which a config file cannot hold; give tokenizers as "
                     f"{{class_path, init_args}} (a TokenizerSpec or a YAML class_path), not python callables")


def config_to_dict(cfg: ModelConfig) -> dict[str, Any]:
    """``{"type": <config class name>, <field>: <plain value>...}``; raises ValueError naming a field that is not
    plain data (a tokenizer given as a python callable)."""
    if not isinstance(cfg, CONFIG_TYPES):
        raise TypeError(f"config_to_dict takes a model config, got {type(cfg).__name__}")
    name = type(cfg).__name__
    return {"type": name, **{f.name: _plain(getattr(cfg, f.name), f"{name}.{f.name}") for f in dataclasses.fields(cfg)}}


def _typed(hint: Any, value: Any, where: str) -> Any:
    """``value`` (plain) as the type ``hint`` names: backbones, tokenizer specs and model configs rebuilt."""
    if value is None:
        return None
    args = typing.get_args(hint)
    if hint is BackboneConfig or BackboneConfig in args:
        if not isinstance(value, Mapping):
            raise ValueError(f"{where} must be a mapping of BackboneConfig fields, got {type(value).__name__}")
        known = {f.name for f in dataclasses.fields(BackboneConfig)}
        unknown = sorted(set(value) - known)
        if unknown:
            raise ValueError(f"{where} has unknown BackboneConfig fields {unknown}")
        return BackboneConfig(**value)
    if any(a is TokenizerSpec for a in args) or hint is TokenizerSpec:
        if not isinstance(value, Mapping) or "class_path" not in value:
            raise ValueError(f"{where} must be a tokenizer {{class_path, init_args}}, got {value!r}")
        return TokenizerSpec(str(value["class_path"]), dict(value.get("init_args") or {}))
    if typing.get_origin(hint) is dict and isinstance(value, Mapping) and len(args) == 2 and args[0] is str \
            and set(typing.get_args(args[1])) & set(CONFIG_TYPES):
        return {str(k): config_from_dict(v) for k, v in value.items()}
    if isinstance(value, list) and typing.get_origin(hint) is tuple:
        return tuple(value)
    return value


def config_from_dict(doc: Mapping[str, Any]) -> ModelConfig:
    """The config :func:`config_to_dict` wrote (``type`` names the class); raises ValueError naming an unknown
    type or field."""
    if not isinstance(doc, Mapping) or doc.get("type") not in _BY_NAME:
        got = doc.get("type") if isinstance(doc, Mapping) else type(doc).__name__
        raise ValueError(f"a model config needs 'type' set to one of {sorted(_BY_NAME)}, got {got!r}")
    cls = _BY_NAME[doc["type"]]
    renamed = _RENAMED_FIELDS.get(cls.__name__, {})
    for old, new in renamed.items():
        if old in doc:
            if new in doc:
                raise ValueError(f"{cls.__name__} sets both {old!r} (its former name) and {new!r}; keep {new!r}")
            doc = {(new if k == old else k): v for k, v in doc.items()}
    hints = typing.get_type_hints(cls, vars(__import__(cls.__module__, fromlist=["_"])))
    fields = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(doc) - fields - {"type"})
    if unknown:
        raise ValueError(f"{cls.__name__} has no fields {unknown}; its fields are {sorted(fields)}")
    return cls(**{k: _typed(hints[k], v, f"{cls.__name__}.{k}") for k, v in doc.items() if k != "type"})


__all__ = ["build", "config_from_dict", "config_to_dict"]

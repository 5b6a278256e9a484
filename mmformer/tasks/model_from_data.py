"""A task's model config completed from its data: the sizes left unset (None) are filled from the DataModule's
:class:`~mmformer.data.spec.DataSpec`, so a recipe's model section holds the architecture and the data section
the data, and swapping the data needs no model override.

What the data gives, per config (:mod:`mmformer.models.data_fields` names the fields):

- classes: ``num_classes`` ← ``len(spec.class_names)``;
- text: ``vocab_size`` / ``target_vocab_size`` / a CTC head's size, and a text tokenizer's ``vocab_size`` ←
  ``spec.vocab`` (a text *source* of its own vocabulary ← ``spec.source_vocab``);
- control: a trajectory tokenizer's ``state_dim``, ``act_dim``, ``discrete_actions`` and the model's
  ``context`` ← ``spec.control``;
- several tasks: each child model ← ``spec.tasks[name]``.

A value the config does set is kept; whether it fits the data is checked by the task when it binds the data
(one error naming both). A value the data does not declare either is one error saying what to set.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from mmformer.data.spec import DataSpec
from mmformer.models.config import (ClassifierConfig, ContrastiveConfig, DecisionTransformerConfig, ModelConfig,
                                    MultiTaskConfig, PrefixLMConfig, Seq2SeqConfig)
from mmformer.models.data_fields import unset_fields, with_tokenizer_args


def _vocab_size(spec: DataSpec, source: bool = False) -> int | None:
    vocab = (spec.source_vocab or spec.vocab) if source else spec.vocab
    return vocab.vocab_size if vocab is not None else None


def _control_args(spec: DataSpec) -> dict[str, Any]:
    c = spec.control
    return {} if c is None else {"state_dim": c.state_dim, "act_dim": c.act_dim, "discrete_actions": c.discrete}


def _fill(cfg: ModelConfig, spec: DataSpec) -> ModelConfig:
    """``cfg`` with what ``spec`` gives filled into its unset fields (set fields untouched)."""
    vocab = _vocab_size(spec)
    changes: dict[str, Any] = {}

    def unset(name: str) -> bool:
        return getattr(cfg, name) is None

    if isinstance(cfg, ClassifierConfig):
        if unset("num_classes") and spec.class_names is not None:
            changes["num_classes"] = len(spec.class_names)
        changes["tokenizer"] = with_tokenizer_args(cfg.tokenizer, vocab_size=vocab)
    elif isinstance(cfg, Seq2SeqConfig):
        target = cfg.target_vocab_size if cfg.target_vocab_size is not None else vocab
        changes["target_vocab_size"] = target
        if unset("ctc_vocab_size"):
            changes["ctc_vocab_size"] = target
        source = target if cfg.share_source_embedding else _vocab_size(spec, source=True)
        changes["source_tokenizer"] = with_tokenizer_args(cfg.source_tokenizer, vocab_size=source)
    elif isinstance(cfg, PrefixLMConfig):
        text = cfg.vocab_size if cfg.vocab_size is not None else vocab
        changes["vocab_size"] = text
        if unset("ctc_vocab_size"):
            changes["ctc_vocab_size"] = text
        if cfg.prefix_tokenizer is not None:
            prefix = text if cfg.share_prefix_embedding else _vocab_size(spec, source=True)
            changes["prefix_tokenizer"] = with_tokenizer_args(cfg.prefix_tokenizer, vocab_size=prefix)
    elif isinstance(cfg, ContrastiveConfig):
        changes["tokenizer_a"] = with_tokenizer_args(cfg.tokenizer_a, vocab_size=vocab)
        changes["tokenizer_b"] = with_tokenizer_args(cfg.tokenizer_b, vocab_size=vocab)
    elif isinstance(cfg, DecisionTransformerConfig):
        changes["tokenizer"] = with_tokenizer_args(cfg.tokenizer, **_control_args(spec))
        if unset("context") and spec.control is not None:
            changes["context"] = spec.control.context
    elif isinstance(cfg, MultiTaskConfig):
        tasks = spec.tasks or {}
        changes["models"] = {name: _fill(child, tasks[name]) if name in tasks else child
                             for name, child in cfg.models.items()}
    elif hasattr(cfg, "tokenizer"):  # causal and masked language models: one text tokenizer
        changes["tokenizer"] = with_tokenizer_args(cfg.tokenizer, vocab_size=vocab)
    return dataclasses.replace(cfg, **changes)


def _needs(name: str) -> str:
    """What a DataModule must declare for the unset field ``name``."""
    leaf = name.rsplit(".", 1)[-1]
    if leaf == "num_classes":
        return "class_names"
    if leaf in ("state_dim", "act_dim", "discrete_actions", "context"):
        return "control (a ControlSpec)"
    return "vocab (a sentencepiece vocabulary)"


def complete_config(cfg: ModelConfig, spec: DataSpec, provider: str) -> ModelConfig:
    """``cfg`` with every unset data-given size taken from ``spec``; ValueError naming each size neither sets.

    Args:
        cfg: the task's model config (fields left None are the data's to give).
        spec: the data's spec, as its DataModule declares it after ``setup``.
        provider: the DataModule's name, for the error.
    """
    done = _fill(cfg, spec)
    missing = unset_fields(done)
    if missing:
        needs = sorted({_needs(m) for m in missing})
        raise ValueError(f"the model's {', '.join(missing)} {'is' if len(missing) == 1 else 'are'} not set and "
                         f"{provider} does not declare {' or '.join(needs)}: set "
                         f"{', '.join('model.init_args.model.' + m.replace('.', '.init_args.') for m in missing)} in the "
                         f"recipe, or use a DataModule whose data_spec() gives {' and '.join(needs)}")
    return done


__all__ = ["complete_config"]

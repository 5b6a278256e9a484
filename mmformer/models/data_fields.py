"""The sizes of a model config that its data gives, and which of them are still unset.

A task may leave these None (in YAML: leave them out) and have them filled from its DataModule's spec before the
model is built (:mod:`mmformer.tasks.model_from_data`): the number of classes, the text vocabulary, a control
environment's state and action sizes and context. :func:`unset_fields` names what is still missing, so
:func:`mmformer.models.build` refuses an incomplete config with one error instead of a ``TypeError`` deep inside
a layer.

Tokenizers are :class:`~mmformer.models.config.TokenizerSpec` s; their data-given arguments are the
constructor's parameters named in :data:`TOKENIZER_DATA_ARGS` that are None or absent (the tokenizers default
them to None for this reason). A tokenizer given as a python callable is opaque and counts as complete.
"""

from __future__ import annotations

import dataclasses
import inspect
from typing import Any

from mmformer.models.config import (ModelConfig, MultiTaskConfig, TokenizerSpec)

# constructor arguments of a tokenizer that its data gives when they are None
TOKENIZER_DATA_ARGS = ("vocab_size", "state_dim", "act_dim", "discrete_actions")
# config fields (not tokenizers) that the data gives when they are None
CONFIG_DATA_FIELDS = ("num_classes", "target_vocab_size", "vocab_size", "ctc_vocab_size", "context")


def tokenizer_unset(tokenizer: Any) -> list[str]:
    """The data-given constructor arguments of a tokenizer spec that are None or absent (no default)."""
    if not isinstance(tokenizer, TokenizerSpec):
        return []
    params = inspect.signature(tokenizer.resolve()).parameters
    missing = []
    for name in TOKENIZER_DATA_ARGS:
        if name not in params:
            continue
        value = tokenizer.init_args.get(name, params[name].default)
        if value is None or value is inspect.Parameter.empty:
            missing.append(name)
    return missing


def with_tokenizer_args(tokenizer: Any, **values: Any) -> Any:
    """``tokenizer`` (a spec) with the unset ones of ``values`` filled in; anything else unchanged."""
    if not isinstance(tokenizer, TokenizerSpec):
        return tokenizer
    unset = tokenizer_unset(tokenizer)
    filled = {k: v for k, v in values.items() if k in unset and v is not None}
    return TokenizerSpec(tokenizer.class_path, {**tokenizer.init_args, **filled}) if filled else tokenizer


def unset_fields(cfg: ModelConfig) -> list[str]:
    """Dotted names of the data-given values ``cfg`` still lacks (``[]`` = it builds as it is)."""
    missing: list[str] = []
    for f in dataclasses.fields(cfg):
        value = getattr(cfg, f.name)
        if f.name in CONFIG_DATA_FIELDS and value is None:
            missing.append(f.name)
        elif isinstance(value, TokenizerSpec):
            missing += [f"{f.name}.{name}" for name in tokenizer_unset(value)]
    if isinstance(cfg, MultiTaskConfig):
        missing += [f"models.{task}.{name}" for task, child in cfg.models.items() for name in unset_fields(child)]
    return missing


def fill_unset(cfg: ModelConfig, source: ModelConfig) -> ModelConfig:
    """``cfg`` with its unset data-given values taken from ``source`` (a config of the same model as built, e.g. the
    one a checkpoint stores); what ``cfg`` sets is kept, so a checkpoint that does not fit it still fails to load."""
    if type(cfg) is not type(source):
        raise ValueError(f"the checkpoint's model is a {type(source).__name__}, the task's a {type(cfg).__name__}")
    changes: dict[str, Any] = {}
    for f in dataclasses.fields(cfg):
        value, given = getattr(cfg, f.name), getattr(source, f.name)
        if f.name in CONFIG_DATA_FIELDS and value is None:
            changes[f.name] = given
        elif isinstance(value, TokenizerSpec) and isinstance(given, TokenizerSpec):
            changes[f.name] = with_tokenizer_args(value, **{k: given.init_args.get(k) for k in TOKENIZER_DATA_ARGS})
    if isinstance(cfg, MultiTaskConfig) and isinstance(source, MultiTaskConfig):
        changes["models"] = {name: fill_unset(child, source.models[name]) if name in source.models else child
                             for name, child in cfg.models.items()}
    return dataclasses.replace(cfg, **changes)


__all__ = ["CONFIG_DATA_FIELDS", "TOKENIZER_DATA_ARGS", "fill_unset", "tokenizer_unset", "unset_fields",
           "with_tokenizer_args"]

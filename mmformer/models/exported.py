"""Exports without Lightning: ``model.safetensors`` + ``config.yaml`` whose ``model_config`` is a typed model config
(:func:`~mmformer.models.builders.config_to_dict`), so loading is ``build(config_from_dict(...))`` + the weights::

    from mmformer.models.exported import load_exported
    model = load_exported("exported/")   # a plain nn.Module in eval mode, on the CPU

``mmformer export`` (:mod:`mmformer.cli.export`) writes them from a task's checkpoint; :func:`save_exported` writes
one from any built model. Exports written before ``model_config`` existed (version <= 2: the task's ``class_path``
and ``init_args`` only) load too: the task's model arguments of mmformer's own tasks are translated to the config
here (:data:`TASK_CONFIGS`), and weights of an older layout are renamed (:mod:`mmformer.models.legacy`). Any other
task raises :class:`NotTranslatable`, and :func:`mmformer.cli.load_exported` builds it through its task class.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any, Callable, Mapping

import yaml
from torch import Tensor, nn

from mmformer.backbone import BackboneConfig
from mmformer.models.builders import build, config_from_dict, config_to_dict
from mmformer.models.config import (ModelConfig, Seq2SeqConfig, TokenizerSpec, classifier_config, contrastive_config,
                                    decision_transformer_config, multitask_config, prefix_lm_config, seq2seq_config)
from mmformer.models.legacy import FORMAT_VERSION, RENAMED_ARGS, upgrade_state_dict

FORMAT, VERSION = "mmformer-export", 3  # 2: records the weights' layout (state_format); 3: the typed model_config
WEIGHTS, CONFIG = "model.safetensors", "config.yaml"

# task class name (of a class_path under mmformer.tasks) → its model arguments → the model config
TASK_CONFIGS: dict[str, Callable[..., ModelConfig]] = {
    "ClassificationTask": classifier_config, "Seq2SeqTask": seq2seq_config, "PrefixLMTask": prefix_lm_config,
    "ContrastiveTask": contrastive_config, "DecisionTransformerTask": decision_transformer_config,
}
_BACKBONE_ARGS = ("backbone", "decoder", "backbone_b")
_TOKENIZER_ARGS = ("tokenizer", "source_tokenizer", "prefix_tokenizer", "tokenizer_a", "tokenizer_b")


class NotTranslatable(ValueError):
    """An older export of a task whose model arguments this module cannot translate (not one of mmformer's tasks)."""


def plain_tensors(state: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """CPU, contiguous, detached tensors; a tensor sharing storage with an earlier one (tied weights) is
    cloned, since safetensors refuses shared storage. Loading copies the same values into both ties."""
    out, seen = {}, set()
    for name, t in state.items():
        t = t.detach().cpu()
        ptr = t.untyped_storage().data_ptr()
        if ptr in seen and t.numel() > 0:
            t = t.clone()
        seen.add(ptr)
        out[name] = t.contiguous()
    return out


def save_exported(model: nn.Module, cfg: ModelConfig | None, out_dir: str | Path,
                  task: Mapping[str, Any] | None = None) -> Path:
    """Writes ``out_dir/model.safetensors`` (``model``'s state_dict) and ``out_dir/config.yaml``.

    Args:
        model: the plain model (LoRA merged, if any).
        cfg: the config that builds it (``model_config``); None writes only ``task`` (a task whose tokenizer is a
            python callable), which loads through the task class.
        task: the task's ``{class_path, init_args}`` (``model``), kept so the run can be rebuilt; optional.
    """
    from safetensors.torch import save_file

    if cfg is None and task is None:
        raise ValueError("an export needs the model config or the task's class_path and init_args")
    doc: dict[str, Any] = {"format": FORMAT, "version": VERSION, "state_format": FORMAT_VERSION}
    if cfg is not None:
        doc["model_config"] = config_to_dict(cfg)
    if task is not None:
        doc["model"] = dict(task)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    save_file(plain_tensors(model.state_dict()), str(out / WEIGHTS), metadata={"format": "pt"})
    (out / CONFIG).write_text(yaml.safe_dump(doc, sort_keys=False))
    return out


def read_config(path: Path) -> dict[str, Any]:
    """An export's ``config.yaml``, checked: its format, a version this code reads, a model entry."""
    try:
        doc = yaml.safe_load(path.read_text())
    except yaml.YAMLError as e:
        raise ValueError(f"{path} is not valid YAML: {e}") from e
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise ValueError(f"{path} is not an mmformer export (expected 'format: {FORMAT}'); "
                         f"write one with `mmformer export --config ... --ckpt_path ... --out ...`")
    if not isinstance(doc.get("version"), int) or doc["version"] > VERSION:
        raise ValueError(f"{path} has export version {doc.get('version')!r}; this mmformer reads up to {VERSION}")
    if not isinstance(doc.get("model_config"), dict) and \
            not (isinstance(doc.get("model"), dict) and "class_path" in doc["model"]):
        raise ValueError(f"{path} has neither a 'model_config' nor a 'model' entry with a class_path")
    return doc


def task_name(doc: Mapping[str, Any]) -> str | None:
    """The class name of the export's task (``model.class_path``), or None."""
    model = doc.get("model")
    return str(model["class_path"]).rpartition(".")[2] if isinstance(model, Mapping) and "class_path" in model \
        else None


def translate_task(task: Mapping[str, Any], where: str = "the export") -> ModelConfig:
    """The model config of one of mmformer's tasks from its ``{class_path, init_args}`` (older exports)."""
    path = str(task.get("class_path", ""))
    name = path.rpartition(".")[2]
    if not path.startswith("mmformer.tasks.") or (name not in TASK_CONFIGS and name != "MultiTaskTask"):
        raise NotTranslatable(f"{where} names the task {path!r}, whose model arguments only its class can read")
    renamed = RENAMED_ARGS.get(name, {})
    args = {renamed.get(k, k): v for k, v in dict(task.get("init_args") or {}).items()}
    try:
        if name == "MultiTaskTask":  # each child gets the shared backbone, as MultiTaskTask creates its tasks
            children = {n: translate_task({**c, "init_args": {**(c.get("init_args") or {}),
                                                              "backbone": args.get("backbone")}}, where)
                        for n, c in dict(args.get("tasks") or {}).items()}
            return multitask_config(children, _backbone(args.get("backbone")))
        for key in _BACKBONE_ARGS:
            if args.get(key) is not None:
                args[key] = _backbone(args[key])
        for key in _TOKENIZER_ARGS:
            if isinstance(args.get(key), Mapping):
                args[key] = TokenizerSpec(str(args[key]["class_path"]), dict(args[key].get("init_args") or {}))
        return TASK_CONFIGS[name](**args)
    except (TypeError, KeyError) as e:
        raise ValueError(f"cannot read the model of {path} in {where}: {type(e).__name__}: {e}") from e


def _backbone(value: Any) -> BackboneConfig | None:
    if value is None or isinstance(value, BackboneConfig):
        return value
    return BackboneConfig(**{k: v for k, v in dict(value).items() if k not in ("class_path", "init_args")},
                          **dict(value.get("init_args") or {}))


def export_config(doc: Mapping[str, Any], where: str = "the export") -> ModelConfig:
    """The model config of a read export: its ``model_config``, else translated from its task (older exports)."""
    if isinstance(doc.get("model_config"), Mapping):
        return config_from_dict(doc["model_config"])
    cfg = translate_task(doc["model"], where)
    if isinstance(cfg, Seq2SeqConfig) and cfg.ctc_vocab_size and doc.get("state_format", 0) < 1:
        # before layout 1 the CTC head was the task's, not the model's, so the export never held it
        cfg = replace(cfg, ctc_vocab_size=0)
    return cfg


def upgraded_weights(doc: Mapping[str, Any], weights: dict[str, Tensor]) -> dict[str, Tensor]:
    """Weights of an older layout (``state_format`` below the current one; version-1 exports do not record it and
    are upgraded from 0, which leaves current keys as they are) renamed to the current keys."""
    state_format = doc.get("state_format", 0)
    if not isinstance(state_format, int) or state_format >= FORMAT_VERSION:
        return weights
    upgraded = upgrade_state_dict(task_name(doc), {f"model.{k}": v for k, v in weights.items()}, state_format)
    return {k[len("model."):]: v for k, v in upgraded.items()}  # the task's keys are "model." + the exported ones


def load_weights_strict(model: nn.Module, weights: Mapping[str, Tensor], weights_file: Path, config_file: Path) -> None:
    """Loads ``weights`` into ``model``; a missing, unexpected or misshapen key is one ValueError naming them."""
    expected = model.state_dict()
    missing = sorted(set(expected) - set(weights))
    unexpected = sorted(set(weights) - set(expected))
    shapes = sorted(f"{k}: file {tuple(weights[k].shape)} vs model {tuple(expected[k].shape)}"
                    for k in set(expected) & set(weights) if weights[k].shape != expected[k].shape)
    if missing or unexpected or shapes:
        parts = [f"{label} {items[:10]}{' ...' if len(items) > 10 else ''}"
                 for label, items in (("missing keys", missing), ("unexpected keys", unexpected),
                                      ("shape mismatches", shapes)) if items]
        raise ValueError(f"{weights_file} does not match the model in {config_file}: " + "; ".join(parts))
    model.load_state_dict(dict(weights), strict=True)


def read_export(out_dir: str | Path, upgrade: bool = True) -> tuple[dict[str, Any], dict[str, Tensor]]:
    """An export folder's checked config and its weights (``upgrade``: renamed to the current layout by the
    task's class name, see :func:`upgraded_weights`)."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    folder = Path(out_dir)
    if not folder.is_dir():
        raise FileNotFoundError(f"export folder {folder} does not exist")
    for name in (CONFIG, WEIGHTS):
        if not (folder / name).is_file():
            raise FileNotFoundError(f"{folder / name} does not exist (an export has {CONFIG} and {WEIGHTS})")
    doc = read_config(folder / CONFIG)
    try:
        weights = load_file(str(folder / WEIGHTS))
    except (SafetensorError, OSError) as e:
        raise ValueError(f"{folder / WEIGHTS} cannot be read: {e}") from e
    return doc, upgraded_weights(doc, weights) if upgrade else weights


def load_exported(out_dir: str | Path) -> nn.Module:
    """Rebuilds an exported model with :func:`build` and loads its weights: a plain ``nn.Module`` in eval mode,
    on the CPU. Raises :class:`NotTranslatable` for an older export of a task that is not mmformer's own."""
    folder = Path(out_dir)
    doc, weights = read_export(folder)
    cfg = export_config(doc, str(folder / CONFIG))
    try:
        model = build(cfg)
    except (TypeError, ValueError) as e:
        raise ValueError(f"cannot build the model described in {folder / CONFIG}: {type(e).__name__}: {e}") from e
    load_weights_strict(model, weights, folder / WEIGHTS, folder / CONFIG)
    return model.eval()


__all__ = ["CONFIG", "FORMAT", "NotTranslatable", "TASK_CONFIGS", "VERSION", "WEIGHTS", "export_config",
           "load_exported", "load_weights_strict", "plain_tensors", "read_config", "read_export", "save_exported",
           "translate_task", "upgraded_weights"]

"""Exporting a trained model as safetensors weights plus the config that rebuilds it.

    mmformer export --config tasks/<recipe>.yaml [--config mine.yaml] --ckpt_path runs/version_0/checkpoints/last.ckpt --out exported/
    mmformer export --config runs/version_0/config.yaml --ckpt_path runs/version_0/checkpoints/best.ckpt --out exported/

writes ``exported/model.safetensors`` (the plain ``task.model`` weights, LoRA merged in, no optimizer
state, no pickled code) and ``exported/config.yaml``: the typed model config (``model_config``, which
:func:`mmformer.models.exported.load_exported` builds with no Lightning) and the recipe's fully resolved
``model`` section (the task).
The recipe is parsed as ``mmformer fit`` parses it: ``--config`` files layer in order, a run's own saved
``config.yaml`` is accepted (its ``ckpt_path``, when set, is the checkpoint exported unless
``--ckpt_path`` is given), and ``--section.key=value`` overrides apply. From Python::

    from mmformer.cli import load_exported
    model = load_exported("exported/")   # a plain nn.Module in eval mode; no Trainer, no DataModule
    logits = model(images)
"""

from __future__ import annotations

import importlib
import sys
import warnings
from pathlib import Path
from typing import Any, Sequence

import pytorch_lightning as pl
import yaml
from torch import nn

from mmformer.cli.errors import UsageError
from mmformer.cli.lightning import MMFormerCLI
from mmformer.cli.recipes import Configs, config_args, load_weights, parse_recipe, resolved_model_config
from mmformer.finetune.lora import merge_lora
from mmformer.models.builders import config_to_dict
from mmformer.models.exported import (CONFIG, FORMAT, VERSION, WEIGHTS, NotTranslatable,  # noqa: F401
                                      load_weights_strict, plain_tensors, read_export, save_exported)
from mmformer.models.exported import load_exported as load_exported_model
from mmformer.tasks.legacy import FORMAT_VERSION, legacy_task_name, upgrade_state_dict

_plain_tensors = plain_tensors  # the name tests and older scripts import


def export_model(config: Configs, ckpt_path: str | Path, out_dir: str | Path, *overrides: str) -> Path:
    """Writes ``out_dir/model.safetensors`` and ``out_dir/config.yaml`` for a recipe's checkpoint.

    Args:
        config: the recipe YAML the checkpoint was trained with, several layered in order, or the run's
            own saved ``config.yaml``.
        ckpt_path: a checkpoint of that recipe (read weights-only).
        out_dir: the folder to write (created if needed; the two files are overwritten).
        overrides: extra CLI arguments the run was trained with, e.g. ``"--model.init_args.model.backbone.depth=4"``.
    Returns:
        ``out_dir``.
    """
    return _export(parse_recipe([*config_args(config), *overrides]), ckpt_path, out_dir, str(config))


def write_export(task: nn.Module, out_dir: str | Path, task_section: dict[str, Any] | None = None) -> Path:
    """Writes the export of a built task: ``task.model``'s weights (LoRA merged in) and ``task.model_config``
    (``model_config``, when the task has one that a config file can hold: a tokenizer given as a python callable
    cannot be), with the task's ``{class_path, init_args}`` (``model``) when given."""
    merge_lora(task.model)  # LoRA folded into plain weights: the export loads into the model the config builds
    cfg = getattr(task, "model_config", None)
    if cfg is not None:
        try:
            config_to_dict(cfg)
        except ValueError as e:
            if task_section is None:
                raise
            warnings.warn(f"the export has no model_config, so it loads only through its task class (with "
                          f"Lightning): {e}", stacklevel=2)
            cfg = None  # mmformer.cli.load_exported builds the task
    return save_exported(task.model, cfg, out_dir, task_section)


def _export(cli: MMFormerCLI, ckpt_path: str | Path, out_dir: str | Path, source: str) -> Path:
    """Writes the export of the task ``cli`` built, with ``ckpt_path``'s weights."""
    task = load_weights(cli, ckpt_path, source)  # ValueError when the checkpoint does not fit
    return write_export(task, out_dir, resolved_model_config(cli))


def _upgraded_task(model_cfg: dict[str, Any], state_format: Any) -> dict[str, Any]:
    """An older export's task section with the task's renamed init arguments (its ``renamed_args``) current."""
    if not isinstance(state_format, int) or state_format >= FORMAT_VERSION:
        return model_cfg
    module, _, cls_name = str(model_cfg["class_path"]).rpartition(".")
    try:
        cls = getattr(importlib.import_module(module), cls_name)
    except (ImportError, AttributeError, ValueError):
        cls = None  # _build_task says what is wrong with the class_path
    renamed: dict[str, str] = getattr(cls, "renamed_args", None) or {}
    init_args = {renamed.get(k, k): v for k, v in (model_cfg.get("init_args") or {}).items()}
    return {**model_cfg, "init_args": init_args} if "init_args" in model_cfg else model_cfg


def _build_task(model_cfg: dict[str, Any], source: Path) -> pl.LightningModule:
    """Instantiates the task class from its class_path/init_args, without a Trainer or DataModule."""
    from jsonargparse import ArgumentParser

    parser = ArgumentParser(exit_on_error=False)
    parser.add_subclass_arguments(pl.LightningModule, "model")
    try:
        cfg = parser.parse_object({"model": model_cfg})
        instantiate = getattr(parser, "instantiate", None) or parser.instantiate_classes  # renamed in 4.49
        task = instantiate(cfg).model
    except Exception as e:
        raise ValueError(f"cannot build the model described in {source}: {type(e).__name__}: {e}") from e
    if not isinstance(getattr(task, "model", None), nn.Module):
        raise ValueError(f"{model_cfg['class_path']} (from {source}) has no plain `.model` nn.Module to load into")
    return task


def load_exported(out_dir: str | Path) -> nn.Module:
    """Rebuilds an exported model: the plain ``task.model`` (an ``nn.Module``) in eval mode, on the CPU.

    :func:`mmformer.models.exported.load_exported` does it without Lightning (``build(cfg)`` + safetensors); an
    older export of a task it cannot translate (another package's task) is built here through its task class.
    """
    try:
        return load_exported_model(out_dir)
    except NotTranslatable:
        pass
    folder = Path(out_dir)
    doc, weights = read_export(folder, upgrade=False)
    state_format = doc.get("state_format", 0)
    if isinstance(state_format, int) and state_format < FORMAT_VERSION:  # the task class names its renames (MRO)
        module, _, cls_name = str(doc["model"]["class_path"]).rpartition(".")
        try:
            cls = getattr(importlib.import_module(module), cls_name)
        except (ImportError, AttributeError, ValueError):
            cls = None  # _build_task says what is wrong with the class_path
        name = legacy_task_name(cls) if isinstance(cls, type) else None
        upgraded = upgrade_state_dict(name, {f"model.{k}": v for k, v in weights.items()}, state_format)
        weights = {k[len("model."):]: v for k, v in upgraded.items()}  # the task's keys are "model." + these
    model = _build_task(_upgraded_task(doc["model"], doc.get("state_format", 0)), folder / CONFIG).model
    load_weights_strict(model, weights, folder / WEIGHTS, folder / CONFIG)
    return model.eval()


USAGE = """usage: mmformer export --config RECIPE [--config FILE ...] [--ckpt_path CKPT] --out DIR [--section.key=value ...]

Export a trained model as DIR/model.safetensors + DIR/config.yaml (load with mmformer.cli.load_exported).
  --config FILE    the recipe the checkpoint was trained with, layered as for `mmformer fit`; a run's own
                   runs/version_N/config.yaml works too
  --ckpt_path CKPT the checkpoint to export (default: the config's ckpt_path)
  --out DIR        the folder to write
Any other option is a recipe override, as for `mmformer fit` (`mmformer fit --help` lists them)."""


def _pop_option(argv: list[str], name: str) -> str | None:
    """Removes ``--name VALUE`` / ``--name=VALUE`` from ``argv``; returns the last VALUE given."""
    value, i = None, 0
    while i < len(argv):
        if argv[i] == name and i + 1 < len(argv):
            value = argv[i + 1]
            del argv[i:i + 2]
        elif argv[i].startswith(name + "="):
            value = argv.pop(i).split("=", 1)[1]
        else:
            i += 1
    return value


def _config_files(args: Sequence[str]) -> list[str]:
    return [b for a, b in zip(args, args[1:]) if a == "--config"] + [a[9:] for a in args if a.startswith("--config=")]


def _names_a_checkpoint(args: Sequence[str]) -> bool:
    """Whether ``--ckpt_path`` is an option, or a ``--config`` file (a run's saved config) sets ``ckpt_path``."""
    if any(a == "--ckpt_path" or a.startswith("--ckpt_path=") for a in args):
        return True
    for file in _config_files(args):
        try:
            doc = yaml.safe_load(Path(file).read_text())
        except (OSError, yaml.YAMLError):
            return True  # the recipe's parser says what is wrong with it
        if isinstance(doc, dict) and doc.get("ckpt_path"):
            return True
    return False


def main(argv: Sequence[str] | None = None) -> int:
    """``mmformer export``: recipe ``--config`` files + checkpoint → ``--out`` folder with safetensors weights
    and config. A bad option or config raises jsonargparse's ``ArgumentError`` (one line from the command)."""
    args = list(sys.argv[1:] if argv is None else argv)
    if {"-h", "--help"} & set(args):
        print(USAGE)
        return 0
    out = _pop_option(args, "--out")
    if out is None:
        raise UsageError("mmformer export needs --out DIR (the folder to write model.safetensors and config.yaml)")
    if not any(a == "--config" or a.startswith("--config=") for a in args):
        raise UsageError("mmformer export needs --config (the recipe the checkpoint was trained with, or the "
                         "run's own runs/version_N/config.yaml)")
    if not _names_a_checkpoint(args):  # said before the recipe is built (seconds)
        raise UsageError("mmformer export needs --ckpt_path (the checkpoint to export, e.g. "
                         "runs/version_0/checkpoints/last.ckpt)")
    cli = parse_recipe(args, exit_on_error=False)
    ckpt_path = cli.config.get("ckpt_path")
    if not ckpt_path:
        raise UsageError("mmformer export needs --ckpt_path (the checkpoint to export, e.g. "
                         "runs/version_0/checkpoints/last.ckpt)")
    written = _export(cli, ckpt_path, out, " + ".join(_config_files(args)))
    print(written / WEIGHTS)
    print(written / CONFIG)
    return 0

"""Exporting a trained model as safetensors weights plus the config that rebuilds it.

    mmformer export --config tasks/<recipe>.yaml --ckpt_path runs/version_0/checkpoints/last.ckpt --out exported/

writes ``exported/model.safetensors`` (the plain ``task.model`` weights, LoRA merged in, no optimizer
state, no pickled code) and ``exported/config.yaml`` (the recipe's fully resolved ``model`` section). From Python::

    from mmformer.export import load_exported
    model = load_exported("exported/")   # a plain nn.Module in eval mode; no Trainer, no DataModule
    logits = model(images)
"""

from __future__ import annotations

import argparse
import importlib
import warnings
from pathlib import Path
from typing import Any, Sequence

import pytorch_lightning as pl
import yaml
from torch import Tensor, nn

from mmformer.finetune.lora import merge_lora
from mmformer.tasks.legacy import FORMAT_VERSION, legacy_task_name, upgrade_state_dict

FORMAT, VERSION = "mmformer-export", 2  # 2: records the weights' layout (state_format)
WEIGHTS, CONFIG = "model.safetensors", "config.yaml"


def _plain_tensors(state: dict[str, Tensor]) -> dict[str, Tensor]:
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


def export_model(config: str | Path, ckpt_path: str | Path, out_dir: str | Path, *overrides: str) -> Path:
    """Writes ``out_dir/model.safetensors`` and ``out_dir/config.yaml`` for a recipe's checkpoint.

    Args:
        config: the recipe YAML the checkpoint was trained with.
        ckpt_path: a checkpoint of that recipe (read weights-only).
        out_dir: the folder to write (created if needed; the two files are overwritten).
        overrides: extra CLI arguments the run was trained with, e.g. ``"--model.init_args.backbone.depth=4"``.
    Returns:
        ``out_dir``.
    """
    from safetensors.torch import save_file

    from mmformer.recipes import load_task, model_config  # the recipe machinery: LightningCLI

    task, _ = load_task(config, ckpt_path, *overrides)  # ValueError when the checkpoint does not fit
    merge_lora(task.model)  # LoRA folded into plain weights: the export loads into the model the config builds
    model_cfg = model_config(config, *overrides)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    save_file(_plain_tensors(task.model.state_dict()), str(out / WEIGHTS), metadata={"format": "pt"})
    doc = {"format": FORMAT, "version": VERSION, "state_format": FORMAT_VERSION, "model": model_cfg}
    (out / CONFIG).write_text(yaml.safe_dump(doc, sort_keys=False))
    return out


def _read_config(path: Path) -> dict[str, Any]:
    try:
        doc = yaml.safe_load(path.read_text())
    except yaml.YAMLError as e:
        raise ValueError(f"{path} is not valid YAML: {e}") from e
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise ValueError(f"{path} is not an mmformer export (expected 'format: {FORMAT}'); "
                         f"write one with `mmformer export --config ... --ckpt_path ... --out ...`")
    if not isinstance(doc.get("version"), int) or doc["version"] > VERSION:
        raise ValueError(f"{path} has export version {doc.get('version')!r}; this mmformer reads up to {VERSION}")
    if not isinstance(doc.get("model"), dict) or "class_path" not in doc["model"]:
        raise ValueError(f"{path} has no 'model' entry with a class_path")
    return doc


def _upgraded(doc: dict[str, Any], weights: dict[str, Tensor]) -> tuple[dict[str, Any], dict[str, Tensor]]:
    """An export written by an older layout (``state_format`` below the current one; version-1
    exports do not record it and are upgraded from 0, which leaves current keys as they are): the
    task's renamed init arguments (its ``renamed_args``) and weight keys take their current names."""
    state_format = doc.get("state_format", 0)
    model_cfg = doc["model"]
    if not isinstance(state_format, int) or state_format >= FORMAT_VERSION:
        return model_cfg, weights
    module, _, cls_name = str(model_cfg["class_path"]).rpartition(".")
    try:
        cls = getattr(importlib.import_module(module), cls_name)
    except (ImportError, AttributeError, ValueError):
        cls = None  # _build_task says what is wrong with the class_path
    renamed: dict[str, str] = getattr(cls, "renamed_args", None) or {}
    init_args = {renamed.get(k, k): v for k, v in (model_cfg.get("init_args") or {}).items()}
    model_cfg = {**model_cfg, "init_args": init_args} if "init_args" in model_cfg else model_cfg
    name = legacy_task_name(cls) if isinstance(cls, type) else None
    # the task's keys are "model." + the exported ones
    upgraded = upgrade_state_dict(name, {f"model.{k}": v for k, v in weights.items()}, state_format)
    return model_cfg, {k[len("model."):]: v for k, v in upgraded.items()}


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
    """Rebuilds an exported model: the plain ``task.model`` (an ``nn.Module``) in eval mode, on the CPU."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    folder = Path(out_dir)
    if not folder.is_dir():
        raise FileNotFoundError(f"export folder {folder} does not exist")
    for name in (CONFIG, WEIGHTS):
        if not (folder / name).is_file():
            raise FileNotFoundError(f"{folder / name} does not exist (an export has {CONFIG} and {WEIGHTS})")
    doc = _read_config(folder / CONFIG)
    try:
        weights = load_file(str(folder / WEIGHTS))
    except (SafetensorError, OSError) as e:
        raise ValueError(f"{folder / WEIGHTS} cannot be read: {e}") from e
    model_cfg, weights = _upgraded(doc, weights)
    model = _build_task(model_cfg, folder / CONFIG).model

    expected = model.state_dict()
    missing = sorted(set(expected) - set(weights))
    unexpected = sorted(set(weights) - set(expected))
    shapes = sorted(f"{k}: file {tuple(weights[k].shape)} vs model {tuple(expected[k].shape)}"
                    for k in set(expected) & set(weights) if weights[k].shape != expected[k].shape)
    if missing or unexpected or shapes:
        parts = [f"{label} {items[:10]}{' ...' if len(items) > 10 else ''}"
                 for label, items in (("missing keys", missing), ("unexpected keys", unexpected),
                                      ("shape mismatches", shapes)) if items]
        raise ValueError(f"{folder / WEIGHTS} does not match the model in {folder / CONFIG}: " + "; ".join(parts))
    model.load_state_dict(weights, strict=True)
    return model.eval()


def main(argv: Sequence[str] | None = None) -> None:
    """``mmformer export``: a recipe + checkpoint → ``--out`` folder with safetensors weights and config."""
    parser = argparse.ArgumentParser(
        prog="mmformer export",
        description="Export a trained model as model.safetensors + config.yaml "
                    "(load with mmformer.export.load_exported). Further --section.key=value arguments are passed to the recipe, as for `mmformer fit`.")
    parser.add_argument("--config", required=True, help="the recipe YAML the checkpoint was trained with")
    parser.add_argument("--ckpt_path", required=True, help="a checkpoint of that recipe")
    parser.add_argument("--out", required=True, help="folder to write model.safetensors and config.yaml into")
    args, overrides = parser.parse_known_args(argv)
    try:
        with warnings.catch_warnings():
            # The recipe is parsed from a list while sys.argv holds this command's own arguments.
            warnings.filterwarnings("ignore", message=".*LightningCLI's args parameter")
            out = export_model(args.config, args.ckpt_path, args.out, *overrides)
    except (FileNotFoundError, ValueError) as e:
        parser.error(str(e))
    print(out / WEIGHTS)
    print(out / CONFIG)


if __name__ == "__main__":
    main()

"""Building what a recipe describes from Python: the task with a checkpoint's weights, or its resolved config.

    from mmformer.cli import load_task
    task, data = load_task("tasks/image_classification.yaml", "runs/version_0/checkpoints/last.ckpt")
    task, data = load_task(["tasks/translation.yaml", "mine.yaml"], ckpt)   # --config files layered in order
    task, data = load_task("runs/version_0/config.yaml", ckpt)              # a run's own saved config

Both parse the recipe with the ``mmformer`` command's own LightningCLI (:func:`mmformer.cli.lightning.main`),
so defaults, linked arguments and overrides resolve exactly as for ``mmformer fit``.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any, Sequence, Union

import pytorch_lightning as pl
import yaml

from mmformer.checkpoint import read_checkpoint
from mmformer.cli.lightning import MMFormerCLI, main

# One recipe file, or several layered in order (as repeated --config options).
Configs = Union[str, Path, Sequence[Union[str, Path]]]
# A recipe parsed to build objects, not to train: no loggers or checkpoint callbacks get created.
_NO_RUN = ("--trainer.logger=false", "--trainer.enable_checkpointing=false", "--trainer.callbacks=[]")


def config_args(config: Configs) -> list[str]:
    """``["--config", file, ...]`` for one recipe file or several (layered in order)."""
    files = [config] if isinstance(config, (str, Path)) else list(config)
    return [arg for file in files for arg in ("--config", str(file))]


def parse_recipe(args: Sequence[str], *, exit_on_error: bool = True) -> MMFormerCLI:
    """The LightningCLI of ``args`` (``--config`` files and ``--section.key=value`` overrides, as for
    ``mmformer fit``) with its classes instantiated (task, DataModule, Trainer), not run.

    ``exit_on_error=False`` raises jsonargparse's ``ArgumentError`` for a bad option or config (the
    ``mmformer`` command prints it as one line) instead of printing the usage and exiting.
    """
    with warnings.catch_warnings():  # called from Python: the host program's own sys.argv is not ours
        warnings.filterwarnings("ignore", message=".*args parameter is intended to run from within Python.*")
        warnings.filterwarnings("ignore", message=".*LightningCLI's args parameter")
        return main([*args, *_NO_RUN], run=False, exit_on_error=exit_on_error)


def load_weights(cli: MMFormerCLI, ckpt_path: str | Path, source: str = "the recipe",
                 ckpt: dict[str, Any] | None = None) -> pl.LightningModule:
    """Loads a checkpoint's weights (``ckpt``: the file's contents, if already read) into the task ``cli``
    built; returns the task in eval mode.

    Raises:
        FileNotFoundError, ValueError: the checkpoint is missing, unreadable, or does not fit the model.
    """
    ckpt = read_checkpoint(ckpt_path) if ckpt is None else ckpt
    # As Lightning does: the task sees the checkpoint first (it upgrades pre-redesign keys in place
    # and restores what it keeps beside its weights, e.g. a text vocabulary), then the weights load.
    try:
        cli.model.on_load_checkpoint(ckpt)  # mmformer tasks check the fit here and say who wrote the file
        cli.model.load_state_dict(ckpt["state_dict"])
    except (RuntimeError, ValueError) as e:
        raise ValueError(
            f"checkpoint {ckpt_path} does not fit the model {source} builds (were other settings used in "
            f"training? pass them as overrides): {' '.join(str(e).split())[:1000]}"
        ) from e
    return cli.model.eval()


def load_task(config: Configs, ckpt_path: str | Path, *overrides: str) -> tuple[pl.LightningModule, Any]:
    """Builds the task and DataModule a recipe describes and loads a checkpoint's weights.

    Args:
        config: the recipe YAML the checkpoint was trained with (e.g. ``tasks/image_classification.yaml``),
            several layered in order, or the run's own saved ``config.yaml``.
        ckpt_path: a checkpoint of that recipe (read weights-only).
        overrides: extra CLI arguments, e.g. ``"--model.init_args.model.backbone.depth=4"``.
    Returns:
        ``(task in eval mode, datamodule)``; ``task.model`` is the plain ``nn.Module``.
    Raises:
        FileNotFoundError, ValueError: the checkpoint is missing, unreadable, or does not fit the model.
    """
    ckpt = read_checkpoint(ckpt_path)  # a missing or unreadable checkpoint fails before the recipe is built
    cli = parse_recipe([*config_args(config), *overrides])
    return load_weights(cli, ckpt_path, str(config), ckpt), cli.datamodule


def resolved_model_config(cli: MMFormerCLI) -> dict[str, Any]:
    """The fully resolved ``model`` entry (``class_path`` + every ``init_args``) ``cli`` parsed."""
    try:  # keep explicit nulls; jsonargparse >= 4.49 calls skip_none skip_unset
        text = cli.parser.dump(cli.config, format="yaml", skip_unset=False)
    except (TypeError, ValueError):
        text = cli.parser.dump(cli.config, format="yaml", skip_none=False)
    return yaml.safe_load(text)["model"]


def model_config(config: Configs, *overrides: str) -> dict[str, Any]:
    """The fully resolved ``model`` entry (``class_path`` + every ``init_args``) of a recipe."""
    return resolved_model_config(parse_recipe([*config_args(config), *overrides]))

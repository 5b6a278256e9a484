"""Building what a recipe describes from Python: the task with a checkpoint's weights, or its resolved config.

    from mmformer.recipes import load_task
    task, data = load_task("tasks/image_classification.yaml", "runs/version_0/checkpoints/last.ckpt")

Both parse the recipe with the ``mmformer`` command's own LightningCLI (:func:`mmformer.cli.main`), so
defaults, linked arguments and overrides resolve exactly as for ``mmformer fit``.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import yaml

from mmformer.checkpoint import read_checkpoint
from mmformer.cli import MMFormerCLI, main

# A recipe parsed to build objects, not to train: no loggers or checkpoint callbacks get created.
_NO_RUN = ("--trainer.logger=false", "--trainer.enable_checkpointing=false", "--trainer.callbacks=[]")


def _parse(config: str | Path, overrides: tuple[str, ...]) -> MMFormerCLI:
    """The recipe's LightningCLI with its classes instantiated (task, DataModule, Trainer), not run."""
    with warnings.catch_warnings():  # called from Python: the host program's own sys.argv is not ours
        warnings.filterwarnings("ignore", message=".*args parameter is intended to run from within Python.*")
        return main(["--config", str(config), *_NO_RUN, *overrides], run=False)


def load_task(config: str | Path, ckpt_path: str | Path, *overrides: str) -> tuple[pl.LightningModule, Any]:
    """Builds the task and DataModule a recipe describes and loads a checkpoint's weights.

    Args:
        config: the recipe YAML the checkpoint was trained with (e.g. ``tasks/image_classification.yaml``).
        ckpt_path: a checkpoint of that recipe (read weights-only).
        overrides: extra CLI arguments, e.g. ``"--model.init_args.backbone.depth=4"``.
    Returns:
        ``(task in eval mode, datamodule)``; ``task.model`` is the plain ``nn.Module``.
    Raises:
        FileNotFoundError, ValueError: the checkpoint is missing, unreadable, or does not fit the model.
    """
    ckpt = read_checkpoint(ckpt_path)
    cli = _parse(config, overrides)
    # As Lightning does: the task sees the checkpoint first (it upgrades pre-redesign keys in place
    # and restores what it keeps beside its weights, e.g. a text vocabulary), then the weights load.
    try:
        cli.model.on_load_checkpoint(ckpt)  # mmformer tasks check the fit here and say who wrote the file
        cli.model.load_state_dict(ckpt["state_dict"])
    except (RuntimeError, ValueError) as e:
        raise ValueError(
            f"checkpoint {ckpt_path} does not fit the model {config} builds (were other settings used in "
            f"training? pass them as overrides): {' '.join(str(e).split())[:1000]}"
        ) from e
    return cli.model.eval(), cli.datamodule


def model_config(config: str | Path, *overrides: str) -> dict[str, Any]:
    """The fully resolved ``model`` entry (``class_path`` + every ``init_args``) of a recipe."""
    cli = _parse(config, overrides)
    try:  # keep explicit nulls; jsonargparse >= 4.49 calls skip_none skip_unset
        text = cli.parser.dump(cli.config, format="yaml", skip_unset=False)
    except (TypeError, ValueError):
        text = cli.parser.dump(cli.config, format="yaml", skip_none=False)
    return yaml.safe_load(text)["model"]

"""Loading a trained task from its recipe and checkpoint, from Python, without unpickling code."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """``torch.load(path, weights_only=True)`` with errors that say what is wrong with the file."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} does not exist")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # truncated zip, wrong format, or objects that need unpickling code
        raise ValueError(
            f"checkpoint {path} cannot be read safely ({type(e).__name__}: {str(e).splitlines()[0][:200]}); "
            f"it is corrupt or truncated, or not a weights-only checkpoint — use an earlier checkpoint "
            f"(e.g. last.ckpt of the same run) or re-export it"
        ) from e
    if not isinstance(ckpt, dict) or "state_dict" not in ckpt:
        raise ValueError(f"{path} is not a Lightning checkpoint (no 'state_dict' entry)")
    return ckpt


def load_task(config: str | Path, ckpt_path: str | Path, *overrides: str) -> tuple[pl.LightningModule, Any]:
    """Builds the task and DataModule a recipe describes and loads a checkpoint's weights.

    Args:
        config: the recipe YAML the checkpoint was trained with (e.g. ``tasks/image_classification.yaml``).
        ckpt_path: a checkpoint of that recipe.
        overrides: extra CLI arguments, e.g. ``"--model.init_args.backbone.depth=4"``.
    Returns:
        ``(task in eval mode, datamodule)``; ``task.model`` is the plain ``nn.Module``.
    """
    from mmformer.cli import main

    ckpt = read_checkpoint(ckpt_path)
    with warnings.catch_warnings():  # called from Python: the host program's own sys.argv is not ours
        warnings.filterwarnings("ignore", message=".*args parameter is intended to run from within Python.*")
        cli = main(["--config", str(config), "--trainer.logger=false", "--trainer.enable_checkpointing=false",
                    "--trainer.callbacks=[]", *overrides], run=False)
    try:
        cli.model.load_state_dict(ckpt["state_dict"])
    except RuntimeError as e:
        raise ValueError(
            f"checkpoint {ckpt_path} does not fit the model {config} builds (were other settings used in "
            f"training? pass them as overrides): {' '.join(str(e).split())[:1000]}"
        ) from e
    cli.model.on_load_checkpoint(ckpt)  # what the task keeps beside its weights (e.g. a text vocabulary)
    return cli.model.eval(), cli.datamodule

"""First training losses of a recipe at its seed, to show two checkouts train identically.

Run it from each checkout's root and compare the printed lines (a refactor that keeps a recipe's
numbers prints the same parameter count, initial-weight sum and losses, bit for bit):

    python bench/recipe_losses.py tasks/translation.yaml --data-dir /tmp/mmdata --steps 8

Recipes with a smoke file in tests/tasks/smoke/ use its small data settings (``{tmp}`` becomes
``--data-dir``); the others run on their full embedded data. Validation, logging and checkpoints
are off; the learning-rate schedule depends on ``--steps``, so compare runs with equal steps.
"""

from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path
from typing import Any

import pytorch_lightning as pl

sys.path.insert(0, ".")  # the checkout this runs in, not an installed mmformer
from mmformer.cli import main  # noqa: E402


class _Losses(pl.Callback):
    def __init__(self) -> None:
        self.values: list[float] = []
        self.params, self.init_sum = 0, 0.0

    def on_fit_start(self, trainer: pl.Trainer, module: pl.LightningModule) -> None:
        # the model exists by now even when its sizes came from the data (built in setup), and has not trained
        params = list(module.parameters())
        self.params, self.init_sum = sum(p.numel() for p in params), sum(p.double().sum().item() for p in params)

    def on_train_batch_end(self, trainer: pl.Trainer, module: pl.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        loss = outputs["loss"] if isinstance(outputs, dict) else outputs
        self.values.append(loss.detach().double().item())


def run(recipe: str, data_dir: str, steps: int, extra: list[str]) -> str:
    smoke = Path("tests/tasks/smoke") / (Path(recipe).stem + ".args")
    args = [a.replace("{tmp}/data", data_dir) for a in smoke.read_text().split()] if smoke.exists() else []
    cli = main(["--config", recipe, *args, f"--trainer.max_steps={steps}", "--trainer.limit_val_batches=0",
                "--trainer.logger=false", "--trainer.enable_checkpointing=false", "--trainer.callbacks=[]",
                "--trainer.enable_progress_bar=false", "--trainer.enable_model_summary=false", *extra], run=False)
    losses = _Losses()
    cli.trainer.callbacks.append(losses)
    cli.trainer.fit(cli.model, cli.datamodule)
    return (f"{Path(recipe).stem} params {losses.params} init_sum {losses.init_sum!r} "
            f"losses {[repr(x) for x in losses.values]}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("recipe")
    parser.add_argument("--data-dir", default="data")
    parser.add_argument("--steps", type=int, default=8)
    known, extra = parser.parse_known_args()
    warnings.filterwarnings("ignore")
    print("RESULT", run(known.recipe, known.data_dir, known.steps, extra))

"""Several ``mmformer fit`` runs in one pair of DDP processes (for tests/tasks/test_distributed.py).

Started twice, with ``LOCAL_RANK`` 0 and 1 and ``MASTER_ADDR``/``MASTER_PORT`` set, as torchrun would start
it: Lightning then sees processes created outside it and joins them in one process group, which every
later fit in the same processes reuses. So the interpreter start and the library imports (several
seconds a process on a 2-core machine) are paid once for all recipes instead of twice per recipe.

    python tests/tasks/ddp_driver.py PLAN.json      # PLAN.json: [{"name": ..., "args": [...]}, ...]

A plan entry with ``"losses": PATH`` (and optionally ``"stop_at": STEP``) also records every training step's loss on each rank in
``PATH.rank<r>.jsonl`` (:class:`RecordLosses`, added to the run's callbacks), one
``{"step": <global step after it>, "loss": <float>}`` a line, appended, so a resumed run continues the file.

Prints ``DDP-RUN <name> rank <r> step <s> ok`` after each fit. On an error it prints the traceback and
``DDP-RUN <name> rank <r> failed`` and stops: the other rank would wait for it in a collective.
"""

from __future__ import annotations

import json
import os
import sys
import traceback
from typing import Any

import pytorch_lightning as pl
import torch

from mmformer.cli import main


class RecordLosses(pl.Callback):
    """Appends each training step's loss on this rank to ``<path>.rank<r>.jsonl`` (see the module docstring);
    with ``stop_at``, stops the run after that global step, as a time limit or an interrupt would (Lightning
    ends the epoch early and saves last.ckpt), with the schedule still sized by ``max_steps``."""

    def __init__(self, path: str, stop_at: int | None = None) -> None:
        self.path, self.stop_at = path, stop_at

    def on_train_batch_end(self, trainer: pl.Trainer, module: pl.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        loss = outputs["loss"] if isinstance(outputs, dict) else outputs
        if isinstance(loss, torch.Tensor):
            with open(f"{self.path}.rank{trainer.global_rank}.jsonl", "a") as f:
                f.write(json.dumps({"step": trainer.global_step, "loss": float(loss)}) + "\n")
        if self.stop_at is not None and trainer.global_step >= self.stop_at:
            trainer.should_stop = True


def read_losses(path: str | os.PathLike, rank: int) -> dict[int, float]:
    """What :class:`RecordLosses` wrote for ``rank``: global step → loss (a resumed step: its last record)."""
    with open(f"{path}.rank{rank}.jsonl") as f:
        return {r["step"]: r["loss"] for r in map(json.loads, f)}


def _args(item: dict) -> list[str]:
    if "losses" not in item:
        return item["args"]
    init = {"path": item["losses"], "stop_at": item.get("stop_at")}
    callback = {"class_path": "tests.tasks.ddp_driver.RecordLosses", "init_args": init}
    return [*item["args"], f"--trainer.callbacks+={json.dumps(callback)}"]


def run(plan: list[dict]) -> int:
    rank = os.environ.get("LOCAL_RANK", "?")
    for item in plan:
        try:
            cli = main(["fit", *_args(item)])
        except BaseException:  # noqa: BLE001 - a CLI error exits with SystemExit; report every kind
            traceback.print_exc()
            print(f"DDP-RUN {item['name']} rank {rank} failed", flush=True)
            return 1
        print(f"DDP-RUN {item['name']} rank {cli.trainer.global_rank} step {cli.trainer.global_step} ok", flush=True)
    return 0


if __name__ == "__main__":
    with open(sys.argv[1]) as f:
        sys.exit(run(json.load(f)))

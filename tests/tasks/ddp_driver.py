"""Several ``mmformer fit`` runs in one pair of DDP processes (for tests/tasks/test_distributed.py,
test_fsdp.py and test_ddp_resume.py).

Started twice, with ``LOCAL_RANK`` 0 and 1 and ``MASTER_ADDR``/``MASTER_PORT`` set, as torchrun would start
it: Lightning then sees processes created outside it and joins them in one process group, which every
later fit in the same processes reuses. So the interpreter start and the library imports (several
seconds a process on a 2-core machine) are paid once for all recipes instead of twice per recipe.

    python tests/tasks/ddp_driver.py PLAN.json      # PLAN.json: [{"name": ..., "args": [...]}, ...]

A plan entry with ``"losses": PATH`` also records every training step's loss on each rank in
``PATH.rank<r>.jsonl`` (:class:`RecordLosses`, added to the run's callbacks), one
``{"step": <global step after it>, "loss": <float>}`` a line, appended, so a resumed run continues the file.
With ``"crash_after": S`` the run dies right after step ``S`` (and the checkpoints written at its end), as a
killed or preempted run would; with ``"stop_after": S`` it stops gracefully there, as ``max_time`` stops one
(Lightning ends the epoch early: epoch-end validation and checkpoint). Either way the learning-rate schedule is
still sized by ``max_steps``, as in the uninterrupted run.

Prints ``DDP-RUN <name> rank <r> step <s> ok`` after each fit (``... crashed after step <s>`` for
``crash_after``). On an error it prints the traceback and ``DDP-RUN <name> rank <r> failed`` and stops: the
other rank would wait for it in a collective.
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


class Crash(Exception):
    """Raised by :class:`RecordLosses` to end a run as a kill would (no epoch end, no final checkpoint)."""


class RecordLosses(pl.Callback):
    """Appends each training step's loss on this rank to ``<path>.rank<r>.jsonl``; ends the run after step
    ``crash_after`` (by :class:`Crash`) or ``stop_after`` (gracefully). See the module docstring."""

    def __init__(self, path: str, crash_after: int | None = None, stop_after: int | None = None) -> None:
        self.path, self.crash_after, self.stop_after = path, crash_after, stop_after

    def on_train_batch_start(self, trainer: pl.Trainer, module: pl.LightningModule, batch: Any, batch_idx: int) -> None:
        if self.crash_after is not None and trainer.global_step >= self.crash_after:  # step S's checkpoints are written
            raise Crash(f"crashed after step {trainer.global_step}")

    def on_train_batch_end(self, trainer: pl.Trainer, module: pl.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        loss = outputs["loss"] if isinstance(outputs, dict) else outputs
        if isinstance(loss, torch.Tensor):
            with open(f"{self.path}.rank{trainer.global_rank}.jsonl", "a") as f:
                f.write(json.dumps({"step": trainer.global_step, "loss": float(loss)}) + "\n")
        if self.stop_after is not None and trainer.global_step >= self.stop_after:
            trainer.should_stop = True


def read_losses(path: str | os.PathLike, rank: int) -> dict[int, float]:
    """What :class:`RecordLosses` wrote for ``rank``: global step → loss (a resumed step: its last record)."""
    with open(f"{path}.rank{rank}.jsonl") as f:
        return {r["step"]: r["loss"] for r in map(json.loads, f)}


def _args(item: dict) -> list[str]:
    if "losses" not in item:
        return item["args"]
    init = {"path": item["losses"], "crash_after": item.get("crash_after"), "stop_after": item.get("stop_after")}
    callback = {"class_path": "tests.tasks.ddp_driver.RecordLosses", "init_args": init}
    return [*item["args"], f"--trainer.callbacks+={json.dumps(callback)}"]


def run(plan: list[dict]) -> int:
    rank = os.environ.get("LOCAL_RANK", "?")
    for item in plan:
        try:
            cli = main(["fit", *_args(item)])
        except Crash as e:
            print(f"DDP-RUN {item['name']} rank {rank} {e}", flush=True)
            continue
        except BaseException:  # noqa: BLE001 - a CLI error exits with SystemExit; report every kind
            traceback.print_exc()
            print(f"DDP-RUN {item['name']} rank {rank} failed", flush=True)
            return 1
        print(f"DDP-RUN {item['name']} rank {cli.trainer.global_rank} step {cli.trainer.global_step} ok", flush=True)
    return 0


if __name__ == "__main__":
    # The callbacks import this file as tests.tasks.ddp_driver: run that module's `run`, so `except Crash`
    # catches the class they raise (this script's own __main__.Crash is another class).
    from tests.tasks.ddp_driver import run as _run

    with open(sys.argv[1]) as f:
        sys.exit(_run(json.load(f)))

"""Resume harness: run ``mmformer fit`` uninterrupted, and stopped then resumed from its checkpoint, and
compare the loss of every training batch (Lightning's ``outputs["loss"]``, keyed by epoch and batch index).

A run is the in-process CLI (:func:`mmformer.cli.main`) with the argv a user types; :class:`LossLog`
(a callback given in the trainer YAML) appends one JSON line per training batch to a file, so a run in
a subprocess reports the same way.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import pytorch_lightning as pl


class LossLog(pl.Callback):
    """Appends ``{"epoch", "batch", "step", "loss"}`` per training batch to ``path`` (JSON lines)."""

    def __init__(self, path: str) -> None:
        self.path = path

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        loss = outputs["loss"] if isinstance(outputs, Mapping) else outputs
        row = {"epoch": trainer.current_epoch, "batch": batch_idx, "step": trainer.global_step, "loss": float(loss)}
        with open(self.path, "a") as f:
            f.write(json.dumps(row) + "\n")


class StopAt(pl.Callback):
    """Stops the run gracefully once it has taken ``step`` optimizer steps (as an interrupted run does):
    the schedule stays the uninterrupted run's, and ``last.ckpt`` is written as the run ends."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_train_batch_end(self, trainer: pl.Trainer, *args: Any) -> None:
        if trainer.global_step >= self.step:
            trainer.should_stop = True


class KillAt(pl.Callback):
    """Ends the process at once (``os._exit``, as a kill would) as the batch after optimizer step ``step`` starts:
    the checkpoint of that step is on disk, nothing later is written."""

    CODE = 75  # the exit status, to tell this kill from a failure

    def __init__(self, step: int) -> None:
        self.step = step

    def on_train_batch_start(self, trainer: pl.Trainer, *args: Any) -> None:
        if trainer.global_step >= self.step:
            os._exit(self.CODE)


@dataclass(frozen=True)
class Batch:
    """One training batch of a run, as :class:`LossLog` logged it."""

    epoch: int  # the trainer's epoch number (a run resumed from a graceful stop numbers one higher: EpochSampler)
    batch: int  # its index in the epoch
    step: int  # optimizer steps taken after it
    loss: float


Losses = list[Batch]  # a run's training batches in the order it trained on them


def read_losses(path: Path) -> Losses:
    return [Batch(**json.loads(line)) for line in path.read_text().splitlines()] if path.exists() else []


TRAINER = """\
logger: false
enable_progress_bar: false
enable_model_summary: false
num_sanity_val_steps: 0
limit_val_batches: 0
max_epochs: 1000
callbacks:
  - class_path: tests.tasks.resume_harness.LossLog
    init_args: {{path: {log}}}
{more}"""


def _callback(class_path: str, **init_args: Any) -> str:
    return f"  - class_path: {class_path}\n    init_args: {json.dumps(init_args)}\n"


@dataclass
class Case:
    """One DataModule's resume case: the CLI argv of a tiny run, and its schedule.

    Args:
        argv: ``--config``/override arguments of the run (data and model), without the trainer's.
        epoch_batches: training batches per epoch (checked against the uninterrupted run).
        workers: the override that sets the DataLoader workers, formatted with ``{n}``.
    """

    argv: list[str]
    epoch_batches: int
    workers: list[str] = field(default_factory=lambda: ["--data.init_args.num_workers={n}"])

    def steps(self, accumulate: int) -> tuple[int, int]:
        """``(stop, total)`` optimizer steps: the stop inside epoch 1, the total inside epoch 2 (so the resumed
        run crosses an epoch boundary). An epoch has ``ceil(batches / accumulate)`` steps (Lightning also steps
        on an epoch's last, incomplete accumulation group)."""
        per_epoch = math.ceil(self.epoch_batches / accumulate)
        assert per_epoch >= 2, "an epoch needs two steps at least, to stop inside it"
        return per_epoch + per_epoch // 2, 2 * per_epoch + 1


def fit(case: Case, root: Path, *, accumulate: int, workers: int, max_steps: int, stop_at: int | None = None,
        ckpt_path: str | None = None) -> Losses:
    """One ``mmformer fit`` in this process under ``root``: ``max_steps`` steps, or stopped gracefully (a callback
    sets ``should_stop``) after ``stop_at``, from ``ckpt_path`` if given. Returns its losses.

    A stopped run leaves two checkpoints of its last step: ``root/kill/step=<stop_at>.ckpt``, written as the
    step ended (what a run killed right after saving leaves), and ``root/graceful/last.ckpt``, written as the
    run ended (what ``max_steps``, ``max_time`` or any ``should_stop`` leaves: Lightning writes it as if the
    epoch had ended).
    """
    from mmformer.cli import main

    root.mkdir(parents=True, exist_ok=True)
    log = root / "losses.jsonl"
    log.unlink(missing_ok=True)
    more = ""
    if stop_at is not None:
        checkpoint = "pytorch_lightning.callbacks.ModelCheckpoint"
        more = (_callback(checkpoint, dirpath=str(root / "kill"), filename="{step}", every_n_train_steps=stop_at,
                          save_top_k=-1)
                + _callback(checkpoint, dirpath=str(root / "graceful"), save_last=True, save_top_k=0)
                + _callback("tests.tasks.resume_harness.StopAt", step=stop_at))
    trainer_yaml = root / "trainer.yaml"
    trainer_yaml.write_text(TRAINER.format(log=json.dumps(str(log)), more=more))
    argv = ["fit", *case.argv, "--trainer", str(trainer_yaml), f"--trainer.default_root_dir={root}",
            f"--trainer.max_steps={max_steps}", f"--trainer.accumulate_grad_batches={accumulate}",
            *[w.format(n=workers) for w in case.workers]]
    if ckpt_path is not None:
        argv += ["--ckpt_path", ckpt_path]
    cli = main(argv)
    expected = stop_at or max_steps
    assert cli.trainer.global_step == expected, f"stopped at step {cli.trainer.global_step}, not {expected}"
    return read_losses(log)


def checkpoint_of(root: Path, stop: int, kind: str) -> Path:
    """The checkpoint a run stopped at ``stop`` under ``root`` left for a ``kill`` or a ``graceful`` stop."""
    return root / "kill" / f"step={stop}.ckpt" if kind == "kill" else root / "graceful" / "last.ckpt"


def assert_same_losses(resumed: Losses, full: Losses, before: int, what: str) -> None:
    """``resumed`` trained the batches of ``full`` after its first ``before``, in order, each with the same loss
    and at the same batch index of its epoch."""
    expected = full[before:]
    assert len(resumed) == len(expected), (
        f"{what}: the resumed run trained {len(resumed)} batches, the uninterrupted run {len(expected)} more")
    for i, (got, want) in enumerate(zip(resumed, expected)):
        assert (got.batch, got.loss) == (want.batch, want.loss), (
            f"{what}: training batch {before + i} (epoch {want.epoch}, batch {want.batch}) has loss {got.loss!r} "
            f"at batch {got.batch} of its epoch; the uninterrupted run {want.loss!r}")

"""Exact resume as a user runs it: ``python -m mmformer fit`` killed right after the checkpoint of a step
inside epoch 1, then ``python -m mmformer fit ... --ckpt_path last``, trains the uninterrupted run's batches with
the same losses (issue #41, items 1 and 2):

- length-bucketed batches with DataLoader workers (the sampler used to fix epoch 0's order when Lightning
  created the iterator, before it set the epoch, and to drop the mid-epoch position);
- gradient accumulation 3 over 5-batch epochs (an epoch's last, incomplete group steps too, so the position
  is not ``global_step * 3``) over multi-task data, whose checkpoint used to fail to save (``no record of
  step 9``).

Every DataModule, with and without workers and accumulation, is checked the same way in process by
``test_resume_matrix.py``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.tasks.resume_cases import CASES
from tests.tasks.resume_harness import KillAt, assert_same_losses, fit, read_losses

ROOT = Path(__file__).resolve().parents[2]

pytestmark = [pytest.mark.slow, pytest.mark.filterwarnings("ignore")]


def _trainer_yaml(path: Path, log: Path, kill_at: int | None, every: int) -> str:
    callbacks = [{"class_path": "tests.tasks.resume_harness.LossLog", "init_args": {"path": str(log)}},
                 {"class_path": "pytorch_lightning.callbacks.ModelCheckpoint",
                  "init_args": {"save_last": True, "every_n_train_steps": every}}]
    if kill_at is not None:
        callbacks.append({"class_path": "tests.tasks.resume_harness.KillAt", "init_args": {"step": kill_at}})
    path.write_text(json.dumps({"enable_progress_bar": False, "num_sanity_val_steps": 0, "limit_val_batches": 0,
                                "max_epochs": 1000, "callbacks": callbacks}))
    return str(path)


@pytest.mark.parametrize("name, workers, accumulate", [("manifest", 2, 1), ("multitask", 0, 3)],
                         ids=["bucketed-workers2", "multitask-accumulate3"])
def test_mmformer_fit_killed_in_epoch_1_then_ckpt_path_last_trains_the_uninterrupted_losses(
        tmp_path: Path, name: str, workers: int, accumulate: int) -> None:
    case = CASES[name](tmp_path / "data")
    stop, total = case.steps(accumulate)
    full = fit(case, tmp_path / "full", accumulate=accumulate, workers=workers, max_steps=total)  # in process: cheaper
    before = next(i for i, b in enumerate(full) if b.step == stop) + 1
    assert full[before - 1].epoch == 1 == full[before].epoch, "the kill must land inside epoch 1"

    runs = tmp_path / "runs"
    argv = [sys.executable, "-m", "mmformer", "fit", *case.argv, f"--trainer.default_root_dir={runs}",
            f"--trainer.max_steps={total}", f"--trainer.accumulate_grad_batches={accumulate}",
            *[w.format(n=workers) for w in case.workers]]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    logs = [tmp_path / "killed.jsonl", tmp_path / "resumed.jsonl"]
    killed = subprocess.run([*argv, "--trainer", _trainer_yaml(tmp_path / "t0.yaml", logs[0], stop, stop)],
                            env=env, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert killed.returncode == KillAt.CODE, killed.stderr[-3000:]
    assert read_losses(logs[0]) == full[:before]
    resumed = subprocess.run([*argv, "--trainer", _trainer_yaml(tmp_path / "t1.yaml", logs[1], None, stop),
                              "--ckpt_path", "last"], env=env, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "Restoring states from the checkpoint path at" in resumed.stderr + resumed.stdout
    assert_same_losses(read_losses(logs[1]), full, before, f"{name}, workers {workers}, accumulate {accumulate}")

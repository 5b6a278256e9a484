"""bench/generalist_compare.py --quick: the generalist (fmnist + control, tiny) and each single-task recipe at its
share of the steps, one row per task with both metrics and their ratio (a smoke test; values never asserted)."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.skipif(not Path("/usr/share/datasets/fashion-mnist").is_dir(), reason="Fashion-MNIST is not installed")
def test_quick_comparison_prints_a_row_per_task() -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    out = subprocess.run([sys.executable, str(ROOT / "bench" / "generalist_compare.py"), "--quick"], cwd=ROOT,
                         capture_output=True, text=True, timeout=600, check=True, env=env).stdout
    rows = {line.split()[0]: line.split() for line in out.splitlines()[-2:]}
    assert set(rows) == {"fmnist", "control"}, out
    assert rows["fmnist"][1] == "acc" and rows["control"][1] == "return@500"
    for row in rows.values():
        float(row[3]), float(row[4]), float(row[5])  # generalist, single, ratio


def test_single_fits_run_their_share_of_steps_past_the_recipes_epoch_limit(tmp_path: Path) -> None:
    # A single-task recipe's own max_epochs (here 1 epoch of 2 batches) must not end the comparison's fit early:
    # the single would get less compute than the generalist spent on its task.
    from bench.generalist_compare import steps_only
    from mmformer.cli import main

    cli = main(["fit", "--config", str(ROOT / "tasks" / "image_classification_digits.yaml"),
                f"--trainer.default_root_dir={tmp_path}", "--trainer.max_epochs=1", "--trainer.limit_train_batches=2",
                "--trainer.enable_progress_bar=false", *steps_only(5)])
    assert cli.trainer.global_step == 5

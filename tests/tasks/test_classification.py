"""Image classification end to end through the CLI: learning, plots, predict, exact resume, DDP."""

from __future__ import annotations

import csv
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch
from PIL import Image

from mmformer.cli import main

ROOT = Path(__file__).resolve().parents[2]
DIGITS = str(ROOT / "tasks" / "image_classification_digits.yaml")
QUIET = ["--trainer.enable_progress_bar=false"]


def _metrics(run_dir: Path) -> list[dict[str, str]]:
    return list(csv.DictReader(open(run_dir / "metrics.csv")))


def test_digits_recipe_learns_and_writes_its_plots(tmp_path: Path) -> None:
    fit = main(["fit", "--config", DIGITS, "--trainer.default_root_dir", str(tmp_path), *QUIET])
    ckpt = fit.trainer.checkpoint_callback.last_model_path
    test = main(["test", "--config", DIGITS, "--trainer.default_root_dir", str(tmp_path), "--ckpt_path", ckpt])
    acc = float(test.trainer.callback_metrics["test/acc"])
    assert acc >= 0.95, f"digits test accuracy {acc:.3f} (chance 0.10)"
    log_dir = Path(test.trainer.log_dir)
    for png in ("confusion_matrix.png", "attention_overlays.png"):
        assert (log_dir / png).stat().st_size > 1000, png

    # predict: one row per image file, with label and probability
    folder = tmp_path / "to_predict"
    folder.mkdir()
    dm = test.datamodule
    for i in range(3):
        img = dm.test_set.images[i, 0].numpy()
        Image.fromarray(img).save(folder / f"digit{i}.png")
    pred = main(["predict", "--config", DIGITS, "--trainer.default_root_dir", str(tmp_path), "--ckpt_path", ckpt,
                 "--data.init_args.predict_dir", str(folder)])
    rows = list(csv.DictReader(open(Path(pred.trainer.log_dir) / "predictions.csv")))
    assert [Path(r["id"]).name for r in rows] == ["digit0.png", "digit1.png", "digit2.png"]
    labels = dm.test_set.labels[:3].tolist()
    assert sum(int(r["label"]) == y for r, y in zip(rows, labels)) >= 2
    assert all(0.0 < float(r["probability"]) <= 1.0 for r in rows)


class StopAt(pl.Callback):
    """Simulates an interruption: stops training after ``step`` optimizer steps."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_train_batch_end(self, trainer: pl.Trainer, *args: object) -> None:
        if trainer.global_step >= self.step:
            trainer.should_stop = True


RESUME_TRAINER = """
max_steps: 30
deterministic: true
log_every_n_steps: 1
num_sanity_val_steps: 0
callbacks:
  - class_path: pytorch_lightning.callbacks.ModelCheckpoint
    init_args: {{every_n_train_steps: 11, save_top_k: -1, filename: "{{step}}"}}
{extra}
"""


@pytest.mark.parametrize("extra", [[], ["--model.init_args.mixup=0.8", "--model.init_args.cutmix=1.0"]],
                         ids=["plain", "mixup"])
def test_interrupted_run_resumes_with_identical_losses(tmp_path: Path, extra: list[str]) -> None:
    """Stop at step 11 (mid-epoch: 18 batches per epoch), resume, and compare every later loss.

    With mixup/cutmix on, timm draws from numpy's global RNG: the checkpoint must restore it too."""
    args = ["--config", DIGITS, *QUIET, "--model.init_args.model.backbone.drop_path=0.2", *extra]  # RNG in the model too
    full_cfg, cut_cfg = tmp_path / "full.yaml", tmp_path / "cut.yaml"
    full_cfg.write_text(RESUME_TRAINER.format(extra=""))
    cut_cfg.write_text(RESUME_TRAINER.format(
        extra="  - class_path: tests.tasks.test_classification.StopAt\n    init_args: {step: 11}"))
    main(["fit", *args, "--trainer", str(full_cfg), "--trainer.default_root_dir", str(tmp_path / "full")])
    cut = main(["fit", *args, "--trainer", str(cut_cfg), "--trainer.default_root_dir", str(tmp_path / "cut")])
    assert cut.trainer.global_step == 11
    ckpt = next((tmp_path / "cut").rglob("step=11.ckpt"))
    resumed = main(["fit", *args, "--trainer", str(full_cfg), "--trainer.default_root_dir", str(tmp_path / "cut"),
                    "--ckpt_path", str(ckpt)])
    assert resumed.trainer.global_step == 30

    def losses(run_dir: Path) -> dict[int, float]:
        return {int(r["step"]): float(r["train/loss"]) for r in _metrics(run_dir) if r.get("train/loss")}

    full = losses(tmp_path / "full" / "version_0")
    after = losses(Path(resumed.trainer.log_dir))
    assert sorted(after) == list(range(11, 30)), "the resumed run continues at step 11"
    for step in after:
        assert after[step] == pytest.approx(full[step], abs=1e-6), f"step {step}"


@pytest.mark.slow
def test_ddp_two_cpu_processes_train_and_test_accuracy_equals_single_process(tmp_path: Path) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    cli = [sys.executable, "-m", "mmformer.cli"]
    common = ["--config", DIGITS, "--trainer.default_root_dir", str(tmp_path), *QUIET]
    subprocess.run([*cli, "fit", *common, "--trainer", str(ROOT / "configs/trainer/ddp.yaml"),
                    "--trainer.max_epochs=2", "--trainer.accelerator=cpu"],
                   check=True, env=env, cwd=ROOT, timeout=300, capture_output=True)
    ckpt = str(next(tmp_path.rglob("last.ckpt")))
    accs = {}
    for name, extra in (("ddp", ["--trainer", str(ROOT / "configs/trainer/ddp.yaml"), "--trainer.accelerator=cpu"]),
                        ("single", ["--trainer.devices=1"])):
        out = subprocess.run([*cli, "test", *common, *extra, "--ckpt_path", ckpt],
                             check=True, env=env, cwd=ROOT, timeout=300, capture_output=True, text=True)
        line = next(ln for ln in out.stdout.splitlines() if "test/acc " in ln)
        accs[name] = float(re.findall(r"\d*\.\d+", line)[-1])
    assert accs["ddp"] == accs["single"], accs
    assert accs["single"] > 0.3, "two epochs already beat chance (0.10)"


def test_wrong_channel_count_is_a_clear_error(tmp_path: Path) -> None:
    cli = main(["--config", DIGITS, "--trainer.default_root_dir", str(tmp_path), "--data.init_args.channels=3",
                "--trainer.fast_dev_run=true", *QUIET], run=False)
    with pytest.raises(ValueError, match=r"expected images of shape \(B, 1, H, W\), got \(64, 3, 16, 16\)"):
        cli.trainer.fit(cli.model, cli.datamodule)


def test_load_task_from_python_and_corrupt_checkpoint_errors(tmp_path: Path) -> None:
    from mmformer.checkpoint import read_checkpoint
    from mmformer.cli.recipes import load_task

    fit = main(["fit", "--config", DIGITS, "--trainer.default_root_dir", str(tmp_path), "--trainer.max_steps=3",
                "--trainer.limit_val_batches=1", *QUIET])
    ckpt = Path(fit.trainer.checkpoint_callback.last_model_path)
    task, dm = load_task(DIGITS, ckpt)
    dm.setup("test")
    x = next(iter(dm.test_dataloader()))["input"]
    with torch.no_grad():
        assert torch.allclose(task(x), fit.model.eval()(x), atol=1e-6)

    bad = tmp_path / "truncated.ckpt"
    bad.write_bytes(ckpt.read_bytes()[: ckpt.stat().st_size // 2])
    with pytest.raises(ValueError, match="truncated.ckpt cannot be read safely"):
        read_checkpoint(bad)
    with pytest.raises(FileNotFoundError, match="nothere.ckpt"):
        read_checkpoint(tmp_path / "nothere.ckpt")


def test_load_task_names_a_checkpoint_that_does_not_fit_the_recipe(tmp_path: Path) -> None:
    from mmformer.cli.recipes import load_task

    fit = main(["fit", "--config", DIGITS, "--trainer.default_root_dir", str(tmp_path), "--trainer.max_steps=1",
                "--trainer.limit_val_batches=1", *QUIET])
    ckpt = fit.trainer.checkpoint_callback.last_model_path
    with pytest.raises(ValueError, match=r"does not fit the model.*written by mmformer\.tasks\.classification"
                                         r"\.ClassificationTask.*depth 2 vs 3"):
        load_task(DIGITS, ckpt, "--model.init_args.model.backbone.depth=3")


def test_mixup_and_cutmix_train_with_even_and_odd_batches(tmp_path: Path) -> None:
    for batch in (8, 7):  # timm's batch mixup pairs samples; odd batches train unmixed
        cli = main(["fit", "--config", DIGITS, "--trainer.default_root_dir", str(tmp_path / str(batch)),
                    "--trainer.max_steps=3", "--trainer.limit_val_batches=1", "--trainer.log_every_n_steps=1",
                    "--model.init_args.mixup=0.8", "--model.init_args.cutmix=1.0",
                    f"--data.init_args.batch_size={batch}", *QUIET])
        assert cli.model.mixup is not None and cli.trainer.global_step == 3
        assert torch.isfinite(cli.trainer.callback_metrics["train/loss"])

"""Never lose a run: SIGKILL then ``--ckpt_path last``, atomic checkpoint writes, NaN losses, corrupt files."""

from __future__ import annotations

import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from mmformer.checkpoint import read_checkpoint
from mmformer.cli import main
from mmformer.tasks.base import NonFiniteLossError
from tests.tokenizers.test_plugin import RECIPE, SineDataModule

ROOT = Path(__file__).resolve().parents[2]
DIGITS = str(ROOT / "tasks" / "image_classification_digits.yaml")
QUIET = ["--trainer.enable_progress_bar=false"]
EVERY_5_STEPS = """
callbacks:
  - class_path: pytorch_lightning.callbacks.ModelCheckpoint
    init_args: {every_n_train_steps: 5, save_last: true}
"""


def test_sigkill_mid_epoch_then_resume_with_ckpt_path_last(tmp_path: Path) -> None:
    (tmp_path / "every5.yaml").write_text(EVERY_5_STEPS)
    args = [sys.executable, "-m", "mmformer.cli", "fit", "--config", DIGITS, "--trainer.default_root_dir",
            str(tmp_path), "--trainer", str(tmp_path / "every5.yaml"), *QUIET]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([*args, "--trainer.max_epochs=100"], env=env, cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    last = tmp_path / "version_0" / "checkpoints" / "last.ckpt"
    deadline = time.time() + 120
    while time.time() < deadline and not (last.exists() and read_checkpoint(last)["global_step"] >= 10):
        time.sleep(0.2)
    proc.send_signal(signal.SIGKILL)  # no chance to clean up or write anything more
    proc.wait()
    killed_at = read_checkpoint(last)["global_step"]
    assert killed_at >= 10 and killed_at % 5 == 0, killed_at
    assert killed_at % 18 != 0, "the digits epoch has 18 batches: the kill should land mid-epoch"

    out = subprocess.run([*args, f"--trainer.max_steps={killed_at + 5}", "--ckpt_path", "last"],
                         env=env, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "Restoring states from the checkpoint path at" in out.stderr + out.stdout
    resumed = read_checkpoint(tmp_path / "version_1" / "checkpoints" / "last.ckpt")
    assert resumed["global_step"] == killed_at + 5


def test_a_crash_while_writing_leaves_the_previous_checkpoint_usable(tmp_path: Path, monkeypatch) -> None:
    from fsspec.implementations.local import LocalFileOpener

    cli = main(["fit", "--config", DIGITS, "--trainer.default_root_dir", str(tmp_path), "--trainer.max_steps=2",
                "--trainer.limit_val_batches=1", *QUIET])
    path = tmp_path / "model.ckpt"
    cli.trainer.save_checkpoint(path)
    before = path.read_bytes()

    real_write = LocalFileOpener.write

    def crash_halfway(self, data):  # type: ignore[no-untyped-def]
        real_write(self, data[: len(data) // 2])
        raise OSError("disk full (simulated)")

    monkeypatch.setattr(LocalFileOpener, "write", crash_halfway)
    with pytest.raises(OSError, match="simulated"):
        cli.trainer.save_checkpoint(path)
    monkeypatch.undo()
    assert path.read_bytes() == before
    assert read_checkpoint(path)["global_step"] == 2
    assert not [p for p in tmp_path.iterdir() if p.name != "model.ckpt" and p.is_file()], "no partial file left"


class NaNSineData(SineDataModule):
    """Sine bursts with one NaN sample: its batch gives a NaN loss."""

    def _make(self, n: int, seed: int):  # type: ignore[no-untyped-def]
        ds = super()._make(n, seed)
        if seed == 0:
            ds.tensors[0][5, 3] = math.nan
        return ds


def test_nan_loss_stops_training_naming_the_step_and_writes_no_checkpoint(tmp_path: Path) -> None:
    cfg = tmp_path / "nan.yaml"
    cfg.write_text(RECIPE.replace("tests.tokenizers.test_plugin.SineDataModule",
                                  "tests.tasks.test_reliability.NaNSineData"))
    with pytest.raises(NonFiniteLossError, match=r"global step \d+ \(epoch 0, batch \d+\)"):
        main(["fit", "--config", str(cfg), "--trainer.default_root_dir", str(tmp_path),
              "--trainer.log_every_n_steps=4"])
    assert not list(tmp_path.rglob("*.ckpt"))


def test_corrupt_checkpoint_given_to_the_cli_is_named(tmp_path: Path) -> None:
    good = tmp_path / "good.ckpt"
    torch.save({"state_dict": {}}, good)
    bad = tmp_path / "bad.ckpt"
    bad.write_bytes(good.read_bytes()[:40])
    with pytest.raises(ValueError, match="bad.ckpt cannot be read safely.*corrupt or truncated"):
        main(["test", "--config", DIGITS, "--trainer.default_root_dir", str(tmp_path), "--ckpt_path", str(bad)])

"""The ``mmformer`` command: run folders, checkpoint checks."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from mmformer.cli import MMFormerCLI, _holds_nothing_useful, main, reserve_version
from mmformer.data import DigitsData

ROOT = Path(__file__).resolve().parents[1]
DIGITS = str(ROOT / "tasks" / "image_classification_digits.yaml")
FAST = ["--trainer.max_steps=2", "--trainer.limit_val_batches=1", "--trainer.enable_progress_bar=false"]


class BrokenDigits(DigitsData):
    """Digits whose preparation fails the way a bad data file does."""

    def setup(self, stage: str) -> None:
        raise ValueError("rows.csv line 3: label 'x' is not a class (simulated)")


# --- 10: version folders are reserved atomically -----------------------------------------------------
def test_reserve_version_hands_out_distinct_versions_under_concurrency(tmp_path: Path) -> None:
    got: list[int] = []
    start = threading.Barrier(8)

    def worker() -> None:
        start.wait()
        for _ in range(20):
            got.append(reserve_version(tmp_path / "runs"))

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(got) == list(range(160))
    assert all((tmp_path / "runs" / f"version_{v}").is_dir() for v in got)


def test_a_run_uses_the_folder_it_reserved_and_the_next_run_the_next(tmp_path: Path) -> None:
    for expected in (0, 1):
        cli = main(["fit", "--config", DIGITS, "--trainer.default_root_dir", str(tmp_path), *FAST])
        assert Path(cli.trainer.log_dir) == tmp_path / f"version_{expected}"
        assert all(Path(lg.log_dir) == tmp_path / f"version_{expected}" for lg in cli.trainer.loggers)
        assert Path(cli.trainer.checkpoint_callback.last_model_path).parent.parent == Path(cli.trainer.log_dir)


# --- 18a: a run that fails at start-up leaves no version folder behind ------------------------------
def test_a_run_failing_at_start_up_removes_its_folder(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="simulated"):
        main(["fit", "--config", DIGITS, "--data", "tests.test_cli.BrokenDigits",
              "--trainer.default_root_dir", str(tmp_path), *FAST])
    assert not list(tmp_path.glob("version_*"))
    cli = main(["fit", "--config", DIGITS, "--trainer.default_root_dir", str(tmp_path), *FAST])
    assert Path(cli.trainer.log_dir).name == "version_0"


def test_only_folders_without_checkpoints_or_metrics_count_as_unused(tmp_path: Path) -> None:
    (tmp_path / "config.yaml").write_text("model: {}\n")
    (tmp_path / "hparams.yaml").write_text("{}\n")
    (tmp_path / "events.out.tfevents.1.host.1.0").write_bytes(b"\0" * 88)
    (tmp_path / "metrics.csv").write_text("epoch,step,train/loss\n")
    assert _holds_nothing_useful(tmp_path)
    (tmp_path / "metrics.csv").write_text("epoch,step,train/loss\n0,1,2.3\n")
    assert not _holds_nothing_useful(tmp_path)
    (tmp_path / "metrics.csv").unlink()
    (tmp_path / "checkpoints").mkdir()
    (tmp_path / "checkpoints" / "last.ckpt").write_bytes(b"x")
    assert not _holds_nothing_useful(tmp_path)
    (tmp_path / "checkpoints" / "last.ckpt").unlink()
    (tmp_path / "notes.txt").write_text("mine")  # anything this run did not write is kept
    assert not _holds_nothing_useful(tmp_path)


# --- 11: --ckpt_path is checked in a public hook --------------------------------------------------------
def test_ckpt_path_is_checked_without_overriding_lightning_private_methods(tmp_path: Path) -> None:
    assert "_parse_ckpt_path" not in vars(MMFormerCLI)
    with pytest.raises(FileNotFoundError, match="missing.ckpt does not exist"):
        main(["test", "--config", DIGITS, "--trainer.default_root_dir", str(tmp_path),
              "--ckpt_path", str(tmp_path / "missing.ckpt")])
    assert not list(tmp_path.glob("version_*")), "checked before any run folder is made"

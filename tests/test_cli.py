"""The ``mmformer`` command: run folders, checkpoint checks, one-line user errors, plug-ins from the cwd."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import torch

from mmformer.cli import command as console
from mmformer.cli.lightning import MMFormerCLI, _holds_nothing_useful, main, reserve_version
from mmformer.data import DigitsData
from tests.doc_sections import doc_section
from tests.test_pairings import readme_plugin_module

ROOT = Path(__file__).resolve().parents[1]
DIGITS = str(ROOT / "tasks" / "image_classification_digits.yaml")
FAST = ["--trainer.max_steps=2", "--trainer.limit_val_batches=1", "--trainer.enable_progress_bar=false"]
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}


class BrokenDigits(DigitsData):
    """Digits whose preparation fails the way a bad data file does."""

    def setup(self, stage: str) -> None:
        raise ValueError("rows.csv line 3: label 'x' is not a class (simulated)")


class BuggyDigits(DigitsData):
    """Digits whose preparation hits a programming error, not a user error."""

    def setup(self, stage: str) -> None:
        raise KeyError("a bug")


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


# --- 17: user errors are one line; bugs keep their traceback ----------------------------------------------
def _typo_recipe(tmp_path: Path) -> Path:
    typo = tmp_path / "typo.yaml"
    typo.write_text(Path(DIGITS).read_text().replace("    backbone:", "    backbon:"))
    return typo


def test_misspelt_key_in_a_recipe_is_one_line_with_a_suggestion(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    typo = _typo_recipe(tmp_path)
    assert console.main(["fit", "--config", str(typo)]) == 2
    err = capsys.readouterr().err.strip()
    assert err == f"error: unknown key 'backbon' in model.init_args.model; did you mean 'backbone'? (in {typo})"


@pytest.mark.parametrize(("option", "message"), [
    ("--model.init_args.model.backbone.dpth=3", "unknown key 'dpth' in model.init_args.model.backbone; did you mean 'depth'?"),
    ("--data.init_args.batch_sz=3", "unknown key 'batch_sz' in data.init_args; did you mean 'batch_size'?"),
    ("--trainer.max_epohcs=3", "unknown key 'max_epohcs' in trainer; did you mean 'max_epochs'?"),
    ("--model.init_args.model.tokenizer.init_args.imag_size=3",
     "unknown key 'imag_size' in model.init_args.model.tokenizer.init_args; did you mean 'image_size'?"),
    ("--model.init_args.num_classes=3",  # where the flat task argument of before the model config went
     "unknown key 'num_classes' in model.init_args: the model's settings moved under 'model' (the model config), "
     "so write it as model.init_args.model.num_classes"),
])
def test_misspelt_option_names_the_option(option: str, message: str, capsys: pytest.CaptureFixture) -> None:
    assert console.main(["fit", "--config", DIGITS, option]) == 2
    err = capsys.readouterr().err.strip()
    assert err == f"error: {message} (from option {option.split('=')[0]})"


def test_bad_input_is_one_line_exit_1_and_debug_shows_the_traceback(tmp_path: Path, capsys: pytest.CaptureFixture,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    bad = tmp_path / "bad.ckpt"
    torch.save({"state_dict": {}}, bad)
    bad.write_bytes(bad.read_bytes()[:40])
    args = ["test", "--config", DIGITS, "--trainer.default_root_dir", str(tmp_path), "--ckpt_path", str(bad)]
    assert console.main(args) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and re.match(r"error: checkpoint .*bad.ckpt cannot be read safely", err[0]), err
    with pytest.raises(ValueError, match="cannot be read safely"):
        console.main([*args, "--debug"])
    monkeypatch.setenv("MMFORMER_DEBUG", "1")
    with pytest.raises(ValueError, match="cannot be read safely"):
        console.main(args)


def test_errors_not_raised_by_mmformer_keep_their_traceback(tmp_path: Path) -> None:
    common = ["fit", "--config", DIGITS, "--trainer.default_root_dir", str(tmp_path), *FAST]
    with pytest.raises(KeyError, match="a bug"):
        console.main([*common, "--data", "tests.test_cli.BuggyDigits"])
    # a ValueError, but raised by this test module, not by a `raise` in mmformer: not shortened
    with pytest.raises(ValueError, match="simulated"):
        console.main([*common, "--data", "tests.test_cli.BrokenDigits"])


def test_the_command_prints_one_line_for_a_typo(tmp_path: Path) -> None:
    out = subprocess.run([sys.executable, "-m", "mmformer", "fit", "--config", str(_typo_recipe(tmp_path))],
                         env=ENV, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 2, out.stderr[-3000:]
    assert "error: unknown key 'backbon' in model.init_args.model; did you mean 'backbone'?" in out.stderr
    assert "usage:" not in out.stderr and "Traceback" not in out.stderr


# --- 19: the docs' plug-in example runs as written ------------------------------------------------------
def _readme_plugin() -> tuple[str, str]:
    section = doc_section("Plugging in a new modality")
    module = re.search(r"```python\n(.*?)```", section, re.S)
    recipe = re.search(r"```yaml\n(.*?)```", section, re.S)
    assert module and recipe and "my_pkg." in recipe[1]
    return module[1], recipe[1]


def test_readme_plugin_example_runs_from_the_current_folder(tmp_path: Path) -> None:
    module, recipe = _readme_plugin()
    work = tmp_path / "work"
    work.mkdir()
    (work / "my_pkg.py").write_text(module)
    (work / "sensor.yaml").write_text(recipe)
    with readme_plugin_module(work) as my_pkg:  # the docs' data step, in this process (one import less)
        my_pkg.write_sines(str(work / "sines"), n=96)
    # What pip's console script does: sys.path[0] is the script's folder, not the current folder.
    script = tmp_path / "bin" / "mmformer"
    script.parent.mkdir()
    script.write_text("import sys\nfrom mmformer.cli.command import console\nsys.exit(console())\n")
    out = subprocess.run([sys.executable, str(script), "fit", "--config", "sensor.yaml", *FAST],
                         env=ENV, cwd=work, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    assert (work / "runs" / "version_0" / "checkpoints" / "last.ckpt").is_file()


def test_bf16_on_a_cpu_without_native_bf16_warns(tmp_path: Path) -> None:
    from mmformer.cli import lightning as cli

    avx2 = tmp_path / "cpuinfo"
    avx2.write_text("flags\t\t: fpu sse2 avx avx2 fma\n")
    amx = tmp_path / "cpuinfo_amx"
    amx.write_text("flags\t\t: fpu avx2 avx512f avx512_bf16 amx_bf16\n")
    assert not cli.cpu_has_native_bf16(avx2) and cli.cpu_has_native_bf16(amx)
    assert cli.cpu_has_native_bf16(tmp_path / "missing")  # unknown: no warning
    assert not cli.warn_slow_bf16("32-true", "cpu")
    if not cli.cpu_has_native_bf16():
        with pytest.warns(UserWarning, match="runs matmuls ~20x slower than fp32"):
            assert cli.warn_slow_bf16("bf16-mixed", "cpu")

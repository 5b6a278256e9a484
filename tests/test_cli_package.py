"""The command line in one package (issue #40 item 7): ``mmformer --help`` lists every subcommand, every
subcommand layers ``--config`` files and accepts a run's own saved ``config.yaml``, and the entry points
(``python -m mmformer``, ``python -m mmformer.cli``, the console script) all reach it."""

from __future__ import annotations

import importlib
import os
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml

from mmformer.cli import command
from mmformer.cli.config_files import expand_config_files
from mmformer.cli.export import load_exported
from mmformer.cli.lightning import main

ROOT = Path(__file__).resolve().parents[1]
DIGITS = str(ROOT / "tasks" / "image_classification_digits.yaml")
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
NAMES = ("fit", "validate", "test", "predict", "export", "convert", "prepare", "average", "train-tokenizer")


@pytest.mark.parametrize("module", ["mmformer", "mmformer.cli"])
def test_help_lists_every_subcommand(module: str) -> None:
    res = subprocess.run([sys.executable, "-m", module, "--help"], env=ENV, capture_output=True, text=True,
                         timeout=120)
    assert res.returncode == 0, res.stderr[-2000:]
    listed = [line.split()[0] for line in res.stdout.split("subcommands:", 1)[1].splitlines() if line.startswith("  ")]
    assert tuple(listed) == NAMES


def test_the_command_and_its_help_load_no_lightning() -> None:
    from tests.test_imports_light import _loaded_after

    assert "pytorch_lightning" not in _loaded_after("import mmformer.cli.command, mmformer.__main__")


def test_the_console_script_is_the_command() -> None:
    entry = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]["mmformer"]
    module, _, name = entry.partition(":")
    assert getattr(importlib.import_module(module), name) is command.console
    assert {s.name for s in command.SUBCOMMANDS} == set(NAMES)


def test_an_unknown_subcommand_is_one_line(capsys: pytest.CaptureFixture) -> None:
    assert command.main(["exprot", "--config", DIGITS]) == 2
    assert capsys.readouterr().err.strip() == \
        "error: unknown subcommand 'exprot'; did you mean 'export'? (mmformer --help lists them)"


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, tuple[torch.Tensor, torch.Tensor]]:
    """A digits run of 2 steps: (its saved config.yaml, its last checkpoint, (4 images, their trained logits))."""
    root = tmp_path_factory.mktemp("runs")
    cli = main(["fit", "--config", DIGITS, "--trainer.default_root_dir", str(root), "--trainer.max_steps=2",
                "--trainer.limit_val_batches=1", "--trainer.enable_progress_bar=false"])
    cli.datamodule.setup("test")
    x = next(iter(cli.datamodule.test_dataloader()))["input"][:4]
    with torch.no_grad():
        logits = cli.model.eval()(x)
    run_dir = Path(cli.trainer.log_dir)
    return run_dir / "config.yaml", run_dir / "checkpoints" / "last.ckpt", (x, logits)


def _check_export(out: Path, expected: tuple[torch.Tensor, torch.Tensor]) -> None:
    x, logits = expected
    with torch.no_grad():
        assert torch.allclose(load_exported(out)(x), logits, atol=1e-5)


@pytest.mark.slow
def test_export_layers_config_files_like_fit(run: tuple[Path, Path, Any], tmp_path: Path) -> None:
    """``mmformer export --config recipe --config mine.yaml``: the second file overrides the first."""
    _, ckpt, expected = run
    mine = tmp_path / "mine.yaml"
    mine.write_text("model:\n  init_args:\n    model:\n      backbone:\n        depth: 3\n")  # not the trained size...
    back = tmp_path / "back.yaml"
    back.write_text("model:\n  init_args:\n    model:\n      backbone:\n        depth: 2\n")  # ...and back again
    res = subprocess.run([sys.executable, "-m", "mmformer.cli", "export", "--config", DIGITS, "--config", str(mine),
                          "--config", str(back), "--ckpt_path", str(ckpt), "--out", str(tmp_path / "out")],
                         env=ENV, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    _check_export(tmp_path / "out", expected)
    assert command.main(["export", "--config", DIGITS, "--config", str(mine), "--ckpt_path", str(ckpt),
                         "--out", str(tmp_path / "bad")]) == 1  # mine.yaml applied: depth 3 does not fit


def test_export_takes_the_runs_own_config(run: tuple[Path, Path, Any], tmp_path: Path) -> None:
    """The config.yaml Lightning saved beside the checkpoints (ckpt_path, trainer, callbacks...) is a recipe;
    its ckpt_path, when set, is the checkpoint exported."""
    saved, ckpt, expected = run
    assert "ckpt_path" in yaml.safe_load(saved.read_text())
    assert command.main(["export", "--config", str(saved), "--ckpt_path", str(ckpt), "--out", str(tmp_path / "a")]) == 0
    _check_export(tmp_path / "a", expected)
    resumed = tmp_path / "config.yaml"
    resumed.write_text(saved.read_text().replace("ckpt_path: null", f"ckpt_path: {ckpt}"))
    assert command.main(["export", "--config", str(resumed), "--out", str(tmp_path / "b")]) == 0
    _check_export(tmp_path / "b", expected)


def test_average_layers_config_files_and_accepts_the_runs_config(run: tuple[Path, Path, Any],
                                                                 tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    saved, ckpt, _ = run
    mine = tmp_path / "avg.yaml"
    mine.write_text(yaml.safe_dump({"ckpt_paths": [str(ckpt), str(ckpt)], "output": str(tmp_path / "no.ckpt")}))
    args = ["average", "--config", str(saved), "--config", str(mine), "--output", str(tmp_path / "avg.ckpt")]
    assert command.main(args) == 0
    assert (tmp_path / "avg.ckpt").is_file() and not (tmp_path / "no.ckpt").exists()  # the command line wins
    capsys.readouterr()
    mine.write_text("ckpt_pahts: [a.ckpt, b.ckpt]\n")
    assert command.main(["average", "--config", str(mine), "--output", str(tmp_path / "x.ckpt")]) == 2
    assert capsys.readouterr().err.strip() == (f"error: unknown key 'ckpt_pahts' in {mine}; did you mean "
                                               f"'ckpt_paths'? (see `mmformer average --help`)")


@pytest.mark.parametrize("sub", [s for s in command.SUBCOMMANDS if s.argparse], ids=lambda s: s.name)
def test_every_argparse_subcommand_reads_its_options_from_config_files(sub: command.Subcommand,
                                                                       tmp_path: Path) -> None:
    parser = importlib.import_module(str(sub.module)).build_parser()
    required = [a for a in parser._actions if a.required or not a.option_strings]
    required += [g._group_actions[0] for g in parser._mutually_exclusive_groups if g.required]
    run_config = tmp_path / "config.yaml"  # what a run saves: none of these subcommands' options
    run_config.write_text("seed_everything: 0\ntrainer: {max_steps: 3}\nmodel: {class_path: x}\nckpt_path: null\n")
    values = {}
    for action in required:
        if action.choices:
            values[action.dest] = sorted(action.choices)[0]
        elif action.nargs in ("+", "*"):
            values[action.dest] = ["a.txt", "b.txt"]
        else:
            values[action.dest] = f"{action.dest}-value"
    own = tmp_path / "own.yaml"
    own.write_text(yaml.safe_dump(values))
    args = parser.parse_args(expand_config_files(parser, ["--config", str(run_config), "--config", str(own)]))
    assert {k: getattr(args, k) for k in values} == values

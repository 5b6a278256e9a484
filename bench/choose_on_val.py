"""Choose decoding options on the validation split: a recipe's full test loop, run on its val data.

Each ``--option NAME=OVERRIDES`` (space-separated ``mmformer`` overrides; empty = the recipe as written)
tests one checkpoint with the task's test-time decoding (beam search, hybrid CTC, length limits...) on the
DataModule's *validation* loader, and prints one line per option with its metrics, so a recipe's decoding
defaults are chosen without looking at the test split (then ``mmformer test`` reports the choice once).

    .venv/bin/python bench/choose_on_val.py --config tasks/speech_recognition.yaml \
        --ckpt runs/version_0/checkpoints/last.ckpt \
        --option none= --option ctc0.3=--model.init_args.generation.ctc_weight=0.3

The metrics are logged under ``test/`` (it is the test loop) but come from validation data. A multi-task
recipe takes ``--task NAME``: that task's validation split alone (the other tasks are not evaluated), e.g.

    .venv/bin/python bench/choose_on_val.py --config tasks/generalist.yaml --task speech --ckpt <last.ckpt> \
        --option ctc0.3= --option ctc0.7=--model.init_args.tasks.speech.init_args.generation.ctc_weight=0.7
"""

from __future__ import annotations

import argparse
import tempfile
import time
from typing import Any

from mmformer.cli import main


def parse_option(text: str) -> tuple[str, list[str]]:
    """``"name=--a=1 --b=2"`` → ``("name", ["--a=1", "--b=2"])``."""
    name, sep, rest = text.partition("=")
    if not sep or not name:
        raise argparse.ArgumentTypeError(f"--option takes NAME=OVERRIDES (overrides may be empty), got {text!r}")
    return name, rest.split()


def feed_validation(dm: Any, task: str | None = None) -> None:
    """Makes ``dm``'s test loop run its validation split: ``setup`` builds the split validation needs (a module
    that encodes only the splits of its stage never reads the test split) and the test loader is the validation
    loader. ``task``: a multi-task DataModule's task, whose validation loader alone is run."""
    if task is not None and not hasattr(dm, "val_dataloader_of"):
        raise SystemExit(f"--task is for multi-task recipes; the data is a {type(dm).__name__}")
    setup = dm.setup
    dm.setup = lambda stage=None: setup("validate")
    dm.test_dataloader = dm.val_dataloader if task is None else (lambda: dm.val_dataloader_of([task]))


def test_on_val(config: str, ckpt: str, overrides: list[str], root: str, extra: list[str],
                task: str | None = None) -> dict[str, float]:
    """The task's test loop over the validation loader of ``config`` with ``overrides``: its logged metrics.
    ``task``: a multi-task recipe's task, whose validation loader alone is run."""
    cli = main(["--config", config, f"--trainer.default_root_dir={root}", "--trainer.enable_progress_bar=false",
                *extra, *overrides], run=False)
    dm = cli.datamodule
    feed_validation(dm, task)
    cli.trainer.test(cli.model, datamodule=dm, ckpt_path=ckpt, verbose=False)
    return {k: float(v) for k, v in cli.trainer.callback_metrics.items() if k.startswith("test/")}


def run(config: str, ckpt: str, options: list[tuple[str, list[str]]], extra: list[str],
        task: str | None = None) -> list[str]:
    lines: list[str] = []
    with tempfile.TemporaryDirectory() as root:
        for name, overrides in options:
            start = time.perf_counter()
            metrics = test_on_val(config, ckpt, overrides, root, extra, task)
            vals = "  ".join(f"{k.removeprefix('test/')}={v:.2f}" for k, v in sorted(metrics.items()))
            lines.append(f"{name:20s} val: {vals}  ({time.perf_counter() - start:.0f} s)")
            print(lines[-1], flush=True)
    return lines


def cli() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", required=True, help="the recipe, e.g. tasks/speech_recognition.yaml")
    p.add_argument("--ckpt", required=True, help="the checkpoint to decode with")
    p.add_argument("--option", type=parse_option, action="append", required=True,
                   help="NAME=OVERRIDES, repeatable; the overrides are mmformer options separated by spaces")
    p.add_argument("--task", help="a multi-task recipe's task: decode its validation split alone")
    p.add_argument("--extra", nargs=argparse.REMAINDER, default=[], help="overrides for every option (last)")
    a = p.parse_args()
    print("\n".join(["--- on the validation split ---", *run(a.config, a.ckpt, a.option, a.extra, a.task)]))


if __name__ == "__main__":
    cli()

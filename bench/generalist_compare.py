"""The generalist against its single-task recipes at equal compute (issue #14's closing comparison).

Fits ``tasks/generalist.yaml`` for ``--steps`` steps and tests it (or tests a checkpoint given by
``--generalist-ckpt``), then fits each task's single-task recipe on the compute the generalist spent on that
task, and tests it. A task's share of the generalist run is ``steps × share`` steps (the shares being the
generalist data's fixed sampling weights); with ``--match flops`` (default) the single-task recipe gets
``steps × share × F_generalist(task) / F_single`` steps, F being the training FLOPs of one step (forward +
backward, counted by ``torch.utils.flop_counter.FlopCounterMode`` over a few probe steps of each); with
``--match steps`` it gets ``steps × share`` steps. Prints the FLOPs per step, then per task: the headline
metric of both and their ratio, generalist / single (for WER, where lower is better, single / generalist:
> 1 always means the generalist is better).

Run:
    OMP_NUM_THREADS=2 .venv/bin/python bench/generalist_compare.py --steps 8000            # hours: 5 fits + tests
    .venv/bin/python bench/generalist_compare.py --steps 8000 --generalist-ckpt runs/version_N/checkpoints/last.ckpt
    .venv/bin/python bench/generalist_compare.py --quick     # smoke: fmnist + control, tiny models, 2 steps

``--tasks fmnist control`` compares a generalist of those tasks only (the recipe with the others removed).
Each run's logs go under ``--out`` (default ``runs/generalist_compare``).
"""

from __future__ import annotations

import argparse
import tempfile
import warnings
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import yaml
from torch.utils.flop_counter import FlopCounterMode

from mmformer.cli import main

ROOT = Path(__file__).resolve().parents[1]
RECIPE = ROOT / "tasks" / "generalist.yaml"
# task → (single-task recipe, headline test metric, higher is better)
SINGLE = {
    "fmnist": ("image_classification.yaml", "acc", True),
    "translation": ("translation.yaml", "bleu", True),
    "speech": ("speech_recognition.yaml", "wer", False),
    "control": ("decision_transformer.yaml", "return@500", True),
}
TINY = ["backbone.dim=16", "backbone.depth=1", "backbone.num_heads=2", "backbone.mlp_ratio=2.0"]  # under a prefix


def quick_overrides(task: str | None, data_dir: Path) -> list[str]:
    """Tiny sizes for ``--quick`` (fmnist and control only): ``task`` None = the generalist's keys."""
    m = "--model.init_args"
    tasks = ["fmnist", "control"] if task is None else [task]
    out = [f"{m}.model.{size}" for size in TINY]  # the generalist's shared backbone and a task's alike
    out += ["--trainer.limit_val_batches=1", "--trainer.limit_test_batches=1",
           "--trainer.num_sanity_val_steps=0", "--trainer.enable_progress_bar=false", "--trainer.max_time=null"]
    for name in tasks:
        mi = f"{m}.tasks.{name}.init_args" if task is None else m
        di = f"--data.init_args.datamodules.{name}.init_args" if task is None else "--data.init_args"
        if name == "fmnist":
            out += [f"{mi}.model.tokenizer.init_args.stem_channels=[8]",
                    f"{mi}.model.tokenizer.init_args.stem_convs_per_stage=1",
                    f"{mi}.model.tokenizer.init_args.patch_size={16 if task is None else 14}",  # 32x32 / 28x28 images
                    f"{di}.batch_size=16"]
        else:
            out += [f"{mi}.val_episodes=1", f"{mi}.target_returns=[500]", f"{mi}.val_targets=[500]",
                    f"{di}.data_dir={data_dir}", f"{di}.embedded.init_args.episodes_per_level=2",
                    f"{di}.eval_episodes=2",
                    f"{di}.batch_size=8"]
    return out


def subset_recipe(tasks: list[str], folder: Path) -> Path:
    """``tasks/generalist.yaml`` with only ``tasks`` (model, loss weights, data and sampling weights)."""
    doc = yaml.safe_load(RECIPE.read_text())
    model, data = doc["model"]["init_args"], doc["data"]["init_args"]
    unknown = sorted(set(tasks) - set(model["tasks"]))
    if unknown:
        raise SystemExit(f"unknown tasks {unknown}; the generalist has {list(model['tasks'])}")
    model["tasks"] = {k: v for k, v in model["tasks"].items() if k in tasks}
    model["loss_weights"] = {k: v for k, v in (model.get("loss_weights") or {}).items() if k in tasks}
    data["datamodules"] = {k: v for k, v in data["datamodules"].items() if k in tasks}
    data["weights"] = {k: v for k, v in (data.get("weights") or {}).items() if k in tasks}
    path = folder / "generalist_subset.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def shares(recipe: Path, tasks: list[str]) -> dict[str, float]:
    data = yaml.safe_load(recipe.read_text())["data"]["init_args"]
    if data.get("sampling") != "fixed":
        raise SystemExit("the comparison reads the shares from fixed sampling weights (data.init_args.sampling: fixed)")
    total = sum(data["weights"][t] for t in tasks)
    return {t: data["weights"][t] / total for t in tasks}


class FlopsPerStep(pl.Callback):
    """Training FLOPs of each step (forward, backward and update), by task: ``task`` names a single-task run's
    steps; a multi-task run's batches are ``{task: batch}`` and name themselves."""

    def __init__(self, task: str | None = None) -> None:
        self.task, self.flops = task, defaultdict(list)
        self._mode: FlopCounterMode | None = None
        self._current = ""

    def on_train_batch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Any, idx: int) -> None:
        self._current = self.task or next(iter(batch))
        self._mode = FlopCounterMode(display=False)
        self._mode.__enter__()

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, out: Any, batch: Any,
                           idx: int) -> None:
        assert self._mode is not None
        self._mode.__exit__(None, None, None)
        self.flops[self._current].append(self._mode.get_total_flops())

    def mean(self) -> dict[str, float]:
        return {task: sum(f) / len(f) for task, f in self.flops.items()}


def probe_flops(config: Path, steps: int, root: Path, extra: list[str], task: str | None = None) -> dict[str, float]:
    """Mean training FLOPs per step over ``steps`` probe steps of ``config`` (by task; see :class:`FlopsPerStep`)."""
    cli = main([f"--config={config}", f"--trainer.default_root_dir={root}", *extra, f"--trainer.max_steps={steps}",
                "--trainer.limit_val_batches=0", "--trainer.num_sanity_val_steps=0",
                "--trainer.enable_progress_bar=false", "--trainer.max_time=null"], run=False)
    counter = FlopsPerStep(task)
    cli.trainer.callbacks.append(counter)
    cli.trainer.fit(cli.model, cli.datamodule)
    return counter.mean()


def steps_only(steps: int) -> list[str]:
    """Overrides that make ``steps`` optimizer steps the only end of a fit, without validation: no epoch limit
    (a recipe's own ``max_epochs`` would stop it short of its share: translation.yaml's 4 epochs are 4,836
    steps) and no time limit."""
    return [f"--trainer.max_steps={steps}", "--trainer.max_epochs=-1", "--trainer.max_time=null",
            "--trainer.val_check_interval=null", "--trainer.check_val_every_n_epoch=null",
            "--trainer.limit_val_batches=0"]


def fit_and_test(config: Path, steps: int, root: Path, extra: list[str], ckpt: str | None = None) -> dict[str, float]:
    """Fits ``config`` for ``steps`` steps (unless ``ckpt`` is given) and returns its test metrics."""
    common = ["--config", str(config), f"--trainer.default_root_dir={root}", *extra]
    if ckpt is None:
        fitted = main(["fit", *common, *steps_only(steps)])
        ckpt = fitted.trainer.checkpoint_callback.last_model_path or fitted.trainer.checkpoint_callback.best_model_path
    tested = main(["test", *common, "--ckpt_path", ckpt])
    return {k: float(v) for k, v in tested.trainer.callback_metrics.items()}


def single_steps(tasks: list[str], steps: int, share: dict[str, float], match: str, out: Path, recipe: Path,
                 extra: Any, probe: int) -> tuple[dict[str, int], list[str]]:
    """Steps for each single-task recipe: its share of the generalist's steps, scaled by the FLOPs ratio."""
    n = {t: max(1, round(steps * share[t])) for t in tasks}
    if match == "steps":
        return n, []
    uniform = "{" + ", ".join(f"{t}: 1.0" for t in tasks) + "}"  # every task probed evenly
    gen = probe_flops(recipe, probe * len(tasks), out / "probe", [*extra(None), "--data.init_args.sampling=fixed",
                                                                     f"--data.init_args.weights={uniform}"])
    lines = [f"{'task':12s} {'GFLOP/step generalist':>22s} {'single':>9s} {'single steps':>13s}"]
    for t in tasks:
        single = probe_flops(ROOT / "tasks" / SINGLE[t][0], probe, out / "probe", extra(t), task=t)[t]
        n[t] = max(1, round(n[t] * gen[t] / single))
        lines.append(f"{t:12s} {gen[t] / 1e9:22.3g} {single / 1e9:9.3g} {n[t]:13d}")
    return n, lines


def compare(tasks: list[str], steps: int, out: Path, quick: bool, generalist_ckpt: str | None,
            match: str = "flops", probe: int = 8) -> list[str]:
    out.mkdir(parents=True, exist_ok=True)
    recipe = RECIPE if set(tasks) == set(SINGLE) else subset_recipe(tasks, out)
    share = shares(recipe, tasks)
    data_dir = out / "data"
    extra = (lambda task: quick_overrides(task, data_dir)) if quick else (lambda task: [])  # noqa: E731
    n, lines = single_steps(tasks, steps, share, match, out, recipe, extra, probe)
    print("\n".join(lines), flush=True)
    gen = fit_and_test(recipe, steps, out / "generalist", extra(None), generalist_ckpt)
    lines += [f"{'task':12s} {'metric':12s} {'steps':>6s} {'generalist':>11s} {'single':>9s} {'ratio':>7s}"]
    for task in tasks:
        single_recipe, metric, higher = SINGLE[task]
        single = fit_and_test(ROOT / "tasks" / single_recipe, n[task], out / task, extra(task))
        g, s = gen[f"test/{task}/{metric}"], single[f"test/{metric}"]
        ratio = (g / s if higher else s / g) if min(g, s) > 0 else float("nan")
        lines.append(f"{task:12s} {metric:12s} {n[task]:6d} {g:11.4g} {s:9.4g} {ratio:7.3f}")
    return lines


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--steps", type=int, default=8000, help="generalist steps (singles get their share)")
    p.add_argument("--tasks", nargs="+", default=list(SINGLE), choices=list(SINGLE))
    p.add_argument("--generalist-ckpt", help="test this generalist checkpoint instead of fitting one")
    p.add_argument("--out", type=Path, default=ROOT / "runs" / "generalist_compare")
    p.add_argument("--match", choices=["flops", "steps"], default="flops",
                   help="single-task runs get the generalist's training FLOPs for their task (default) or its steps")
    p.add_argument("--probe-steps", type=int, default=8, help="steps per task that FLOPs per step are averaged over")
    p.add_argument("--quick", action="store_true", help="smoke run: fmnist + control, tiny models, 2 steps")
    return p.parse_args()


def run() -> None:
    args = parse_args()
    warnings.filterwarnings("ignore")
    if args.quick:
        args.tasks, args.steps = ["fmnist", "control"], 2
        with tempfile.TemporaryDirectory() as tmp:
            lines = compare(args.tasks, args.steps, Path(tmp), True, None, args.match, probe=2)
    else:
        lines = compare(args.tasks, args.steps, args.out, False, args.generalist_ckpt, args.match, args.probe_steps)
    print("\n".join(["", "ratio > 1: the generalist is better (WER: single / generalist)", *lines]), flush=True)


if __name__ == "__main__":
    run()

"""Shared by the benchmarks: timing (warm-up, interleaved rounds with rotated order, medians) and running a
recipe command with its output kept in a log."""

from __future__ import annotations

import re
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable, NamedTuple


def interleaved_times(steps: dict[str, Callable[[], object]], repeats: int, warmup: int) -> dict[str, list[float]]:
    """Seconds per call of each step; every round runs each step once, the order rotated per round."""
    for step in steps.values():
        for _ in range(warmup):
            step()
    names = list(steps)
    times: dict[str, list[float]] = {k: [] for k in names}
    for r in range(repeats):
        for k in names[r % len(names):] + names[: r % len(names)]:
            t0 = time.perf_counter()
            steps[k]()
            times[k].append(time.perf_counter() - t0)
    return times


def print_ratios(times: dict[str, list[float]], peers: list[str], ours: str = "mmformer") -> None:
    """A warning when another process disturbed the run, then ``ratio vs <peer>: peer/ours`` lines."""
    med = {k: statistics.median(v) for k, v in times.items()}
    if max(max(times[k]) / min(times[k]) for k in [ours, *peers]) > 1.5:
        paired = {k: statistics.median(t / o for t, o in zip(times[k], times[ours])) for k in peers}
        print("warning: timings spread > 1.5x (shared CPU?); per-round paired ratios: "
              + ", ".join(f"{k} {v:.2f}" for k, v in paired.items()))
    for k in peers:
        print(f"ratio vs {k}: {med[k] / med[ours]:.2f}")


def run_logged(cmd: list[str], log: Path, cwd: Path) -> str:
    """Runs ``cmd`` in ``cwd`` with its output written to ``log``; exits with the log's tail on failure."""
    print("$ " + " ".join(cmd), flush=True)
    done = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True)
    log.write_text(done.stdout + done.stderr)
    if done.returncode:
        raise SystemExit(f"failed (exit {done.returncode}); the last lines of {log}:\n"
                         + "\n".join((done.stdout + done.stderr).splitlines()[-20:]))
    return done.stdout + done.stderr


# A row of Lightning's test table, "test/<name> │ <value>" (negative values kept: control returns).
TEST_METRIC = re.compile(r"(test/[\w@.-]+)[\s│┃|]+(-?[\d.]+)")


class RecipeRun(NamedTuple):
    metrics: dict[str, float]  # test/<name> → value, parsed from the test table
    ckpt: Path  # the checkpoint tested
    fit_minutes: float  # 0 when a checkpoint was given
    test_minutes: float


def fit_and_test(config: list[str], root: Path, cwd: Path, ckpt: str | None = None, test_log: str = "test.log") -> RecipeRun:
    """``mmformer fit`` with ``config`` (``--config`` and overrides) into ``root`` unless ``ckpt`` is given, then
    ``mmformer test`` on ``best.ckpt`` (the recipe's validation choice; ``last.ckpt`` when there is none);
    every command's output goes to a log under ``root``."""
    mm = [sys.executable, "-m", "mmformer"]
    quiet = "--trainer.enable_progress_bar=false"
    fit_minutes = 0.0
    if ckpt is None:
        t0 = time.perf_counter()
        run_logged([*mm, "fit", *config, f"--trainer.default_root_dir={root}", quiet], root / "fit.log", cwd)
        fit_minutes = (time.perf_counter() - t0) / 60
        found = sorted(root.glob("version_*/checkpoints/best.ckpt")) or sorted(root.glob("version_*/checkpoints/last.ckpt"))
        if not found:
            raise SystemExit(f"the fit under {root} wrote no best.ckpt or last.ckpt")
        tested = found[-1]
    else:
        tested = Path(ckpt).resolve()
    t0 = time.perf_counter()
    out = run_logged([*mm, "test", *config, f"--trainer.default_root_dir={root / 'test'}", quiet,
                      f"--ckpt_path={tested}"], root / test_log, cwd)
    metrics = {k: float(v) for k, v in TEST_METRIC.findall(out)}
    return RecipeRun(metrics, tested, fit_minutes, (time.perf_counter() - t0) / 60)

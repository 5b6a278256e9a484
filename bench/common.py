"""Shared by the benchmarks: timing (warm-up, interleaved rounds with rotated order, medians) and running a
recipe command with its output kept in a log."""

from __future__ import annotations

import statistics
import subprocess
import time
from pathlib import Path
from typing import Callable


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

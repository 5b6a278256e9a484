"""Timing shared by the benchmarks: warm-up, interleaved rounds with rotated order, medians."""

from __future__ import annotations

import statistics
import time
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

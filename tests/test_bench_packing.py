"""bench/packing.py --smoke runs packed and padded steps and prints one ratio line per recipe, with the
packed loss equal to the padded one (timings are never asserted)."""

import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_packing_bench_smoke_prints_a_ratio_per_recipe_and_equal_losses() -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}  # this checkout's mmformer, not an installed one
    out = subprocess.run([sys.executable, str(ROOT / "bench" / "packing.py"), "--smoke"], capture_output=True,
                         text=True, timeout=300, check=True, env=env).stdout
    for recipe in ("translation", "speech"):
        assert re.search(rf"^{recipe}: ratio vs padded: \d+\.\d\d$", out, re.M), out
        diff = re.search(rf"^{recipe}: .* loss diff ([0-9.e+-]+)$", out, re.M)
        assert diff and float(diff.group(1)) < 1e-4, out

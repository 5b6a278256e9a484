"""The benchmarks run and print one ratio line per peer (a smoke test; timings are never asserted)."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "bench"


@pytest.mark.parametrize("script, peers", [("backbone.py", ["timm", "torch.nn.TransformerEncoder"]),
                                           ("vit.py", ["timm"])])
def test_benchmark_quick_run_prints_ratio_lines(script: str, peers: list[str]) -> None:
    out = subprocess.run([sys.executable, str(BENCH / script), "--quick"], capture_output=True, text=True,
                         timeout=300, check=True).stdout
    for peer in peers:
        assert any(line.startswith(f"ratio vs {peer}: ") for line in out.splitlines()), out


@pytest.mark.slow
def test_streaming_benchmark_smoke_prints_memory_and_ratio(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(BENCH.parent), "OMP_NUM_THREADS": "1"}
    out = subprocess.run([sys.executable, str(BENCH / "streaming.py"), "--smoke", "--out", str(tmp_path)],
                         capture_output=True, text=True, timeout=600, check=True, env=env).stdout
    lines = out.splitlines()
    for mode in ("png-shards", "decoded-shards"):
        assert any(line.startswith(f"{mode}: ") and "peak memory (PSS" in line for line in lines), out
        ratio = [float(line.split(": ")[1]) for line in lines if line.startswith(f"ratio vs in-memory ({mode}): ")]
        assert len(ratio) == 1 and ratio[0] > 0, out
    for shards in ("shards-2000-16", "shards-decoded-2000-16"):
        assert (tmp_path / shards / "train" / "index.json").is_file(), "the shards were prepared"

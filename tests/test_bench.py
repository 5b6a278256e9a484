"""The benchmarks run and print one ratio line per peer (a smoke test; timings are never asserted)."""

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

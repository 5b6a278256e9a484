"""The translation benchmarks run and print one ratio line per peer (a smoke test; timings are never asserted)."""

import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "bench"
# Runs a bench script as __main__ with `import transformers` failing (as if the bench extra were not installed).
WITHOUT_TRANSFORMERS = ("import runpy, sys; sys.modules['transformers'] = None; sys.path.insert(0, {bench!r}); "
                        "sys.argv = [{script!r}, '--quick']; runpy.run_path({script!r}, run_name='__main__')")


def _run(script: str, block_transformers: bool = False) -> list[str]:
    path = str(BENCH / script)
    cmd = [sys.executable, "-c", WITHOUT_TRANSFORMERS.format(bench=str(BENCH), script=path)] \
        if block_transformers else [sys.executable, path, "--quick"]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=300, check=True).stdout.splitlines()


def _has_ratio(lines: list[str], peer: str) -> bool:
    return any(line.startswith(f"ratio vs {peer}: ") for line in lines)


def test_generation_bench_prints_ratio_lines_for_greedy_and_beam() -> None:
    pytest.importorskip("transformers")
    lines = _run("generation.py")
    for strategy in ("greedy", "beam"):
        for peer in ("MarianMT", "mmformer no-cache", "mmformer unpacked"):
            assert _has_ratio(lines, f"{peer} ({strategy})"), lines
        # Same weights and forced lengths: the peers decode the same tokens.
        assert any(line.startswith(f"{strategy}: tokens equal") for line in lines), lines


def test_generation_bench_without_transformers_skips_the_peer_and_says_how_to_install() -> None:
    lines = _run("generation.py", block_transformers=True)
    assert any("MarianMT skipped" in line and "pip install -e '.[bench]'" in line for line in lines), lines
    assert not _has_ratio(lines, "MarianMT (greedy)")
    assert _has_ratio(lines, "mmformer no-cache (greedy)") and _has_ratio(lines, "mmformer no-cache (beam)"), lines


def test_seq2seq_bench_prints_ratio_line() -> None:
    assert _has_ratio(_run("seq2seq.py"), "torch.nn.Transformer")

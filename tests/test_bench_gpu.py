"""bench/gpu.py, checked on CPU: the --smoke run prints every figure (decoding's three variants included),
packing keeps the real tokens, FLOPs are counted from what runs, and the peak table matches device names (CI has
no GPU)."""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

import pytest
import torch

BENCH = Path(__file__).resolve().parents[1] / "bench"
sys.path.insert(0, str(BENCH))
import gpu  # noqa: E402  (bench/gpu.py)


def _run(*args: str) -> list[str]:
    return subprocess.run([sys.executable, str(BENCH / "gpu.py"), "--smoke", *args], capture_output=True, text=True,
                          timeout=600, check=True).stdout.splitlines()


def test_smoke_run_prints_mfu_for_every_workload_and_variant_and_the_ratios() -> None:
    lines = _run("--skip-fit")
    for workload in ("ViT-S/16", "enc-dec 1+1 d64 padded", "enc-dec 1+1 d64 packed"):
        for variant in ("eager", "compiled"):
            assert any(line.startswith(workload) and f"({variant}):" in line and "MFU" in line for line in lines), lines
    for variant in ("eager", "compiled"):
        assert any(line.startswith(f"ratio vs padded (enc-dec {variant}") for line in lines), lines
    assert sum(line.startswith("ratio vs eager (") for line in lines) == 5, lines
    for variant in ("eager", "compiled", "cuda_graphs"):  # decoding: the growing cache, compiled, CUDA graphs
        assert any(line.startswith("decode greedy") and f"({variant}):" in line and "tokens/s" in line
                   for line in lines), lines


@pytest.mark.slow
def test_smoke_run_fits_the_digits_recipe_through_the_cli() -> None:
    lines = _run("--variants", "eager")
    assert any(line.startswith("fsdp fit (configs/trainer/cpu.yaml, 2 steps): ok") for line in lines), lines


def test_packed_rows_hold_exactly_the_padded_batch_real_tokens_in_fewer_rows() -> None:
    a = argparse.Namespace(seq2seq_batch=16, seq=12, vocab=50)
    b = gpu.seq2seq_batches(a, torch.device("cpu"))
    (src, tgt, real), (psrc, ptgt, preal) = b["padded"], b["packed"]
    assert real == preal == int((src != gpu.PAD).sum() + (tgt != gpu.PAD).sum())
    for padded, packed in ((src, psrc), (tgt, ptgt)):
        assert torch.equal(padded[padded != gpu.PAD], packed[packed != gpu.PAD])  # same tokens, same order
        assert packed.shape[1] == padded.shape[1] and packed.shape[0] < padded.shape[0]
    assert (psrc[:-2] != gpu.PAD).all() or (ptgt[:-2] != gpu.PAD).all()  # rows are full but for the tail


def test_flops_are_counted_from_the_step_that_runs() -> None:
    lin = torch.nn.Linear(64, 32, bias=False)
    x = torch.randn(8, 64, requires_grad=True)
    forward = gpu.count_flops(lambda: lin(x))
    assert forward == 2 * 8 * 64 * 32
    assert gpu.count_flops(lambda: lin(x).sum().backward()) == 3 * forward  # backward: input and weight grads


def test_peak_table_matches_device_names_first_specific_then_general(monkeypatch) -> None:
    cuda = torch.device("cuda")
    for name, tflops in (("NVIDIA H100 PCIe", 756), ("NVIDIA H100 80GB HBM3", 989), ("NVIDIA A100-SXM4-80GB", 312),
                         ("NVIDIA L40S", 362), ("NVIDIA L4", 121), ("Mystery GPU", None)):
        monkeypatch.setattr(torch.cuda, "get_device_name", lambda _d, n=name: n)
        peak = gpu.datasheet_peak(cuda)
        assert peak == (None if tflops is None else tflops * 1e12), name
    assert gpu.datasheet_peak(torch.device("cpu")) is None

"""Training-step speed of mmformer's ``Encoder`` against timm's ViT blocks and ``torch.nn.TransformerEncoder``.

All three run in one process at the ``vit_small_patch16_224`` body shape (dim 384, depth 12, heads 6,
MLP ratio 4, seq 197, pre-norm, final LayerNorm eps 1e-6, dropout 0), CPU fp32, batch 8. One step is
forward + ``out.pow(2).mean()`` + backward with grads zeroed (set_to_none). After a warm-up, each round
times every model once (order rotated per round) plus a 2048^3 fp32 matmul; medians are reported.

Run:
    .venv/bin/python bench/backbone.py            # full size, a couple of minutes on 2 cores
    .venv/bin/python bench/backbone.py --quick    # tiny smoke run, a few seconds

The last lines are ``ratio vs <peer>: X.XX`` with X = peer_time / our_time (> 1: mmformer is faster).
"""

from __future__ import annotations

import argparse
import statistics
from typing import Callable

import torch
from timm.models.vision_transformer import Block as TimmBlock
from torch import Tensor, nn

from common import interleaved_times, print_ratios
from mmformer import BackboneConfig, Encoder, TokenBatch


def build_models(dim: int, depth: int, heads: int) -> dict[str, nn.Module]:
    """mmformer, timm and torch stacks at one config; every model ends with LayerNorm(eps=1e-6)."""
    ours = Encoder(BackboneConfig(dim=dim, depth=depth, num_heads=heads, mlp_ratio=4.0, norm_eps=1e-6))
    timm_body = nn.Sequential(
        *[TimmBlock(dim, heads, mlp_ratio=4.0, qkv_bias=True) for _ in range(depth)],
        nn.LayerNorm(dim, eps=1e-6),
    )
    layer = nn.TransformerEncoderLayer(dim, heads, 4 * dim, dropout=0.0, activation="gelu", batch_first=True,
                                       norm_first=True, layer_norm_eps=1e-6)
    torch_body = nn.TransformerEncoder(layer, depth, norm=nn.LayerNorm(dim, eps=1e-6), enable_nested_tensor=False)
    return {"mmformer": ours, "timm": timm_body, "torch.nn.TransformerEncoder": torch_body}


def make_step(name: str, model: nn.Module, x: Tensor) -> Callable[[], None]:
    """One training step: forward, scalar loss, backward; grads set to None first."""
    forward: Callable[[], Tensor] = (lambda: model(TokenBatch(x)).hidden) if name == "mmformer" else (lambda: model(x))

    def step() -> None:
        model.zero_grad(set_to_none=True)
        forward().pow(2).mean().backward()

    return step


def step_flops(b: int, n: int, d: int, depth: int) -> float:
    """Matmul FLOPs of forward+backward (backward = 2x forward); norms and activations ignored."""
    per_block = 2 * b * n * (4 * d * d + 2 * d * 4 * d) + 2 * 2 * b * n * n * d  # qkv+proj, MLP; QK^T and AV
    return 3.0 * depth * per_block


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--seq", type=int, default=197)
    p.add_argument("--dim", type=int, default=384)
    p.add_argument("--depth", type=int, default=12)
    p.add_argument("--heads", type=int, default=6)
    p.add_argument("--repeats", type=int, default=10, help="interleaved timing rounds")
    p.add_argument("--warmup", type=int, default=3, help="untimed steps per model before timing")
    p.add_argument("--matmul", type=int, default=2048, help="side of the square fp32 matmul peak reference")
    p.add_argument("--quick", action="store_true", help="tiny sizes and 2 rounds (smoke test)")
    a = p.parse_args()
    if a.quick:
        a.batch, a.seq, a.dim, a.depth, a.heads, a.repeats, a.warmup, a.matmul = 2, 16, 32, 2, 2, 2, 1, 256

    torch.manual_seed(0)
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, fp32 CPU, "
          f"B={a.batch} N={a.seq} D={a.dim} depth={a.depth} heads={a.heads}, "
          f"warmup {a.warmup}, rounds {a.repeats}")
    models = build_models(a.dim, a.depth, a.heads)
    counts = {k: sum(p.numel() for p in m.parameters()) for k, m in models.items()}
    print("params: " + ", ".join(f"{k} {v:,}" for k, v in counts.items()))
    if len(set(counts.values())) != 1:
        raise SystemExit(f"parameter counts differ: {counts}")

    x = torch.randn(a.batch, a.seq, a.dim)  # one input for every model
    steps = {k: make_step(k, m.train(), x) for k, m in models.items()}
    ma, mb = torch.randn(a.matmul, a.matmul), torch.randn(a.matmul, a.matmul)
    steps["matmul"] = lambda: torch.mm(ma, mb)
    times = interleaved_times(steps, a.repeats, a.warmup)
    med = {k: statistics.median(v) for k, v in times.items()}

    peak = 2.0 * a.matmul**3 / med["matmul"] / 1e9
    flops = step_flops(a.batch, a.seq, a.dim, a.depth)
    print(f"matmul {a.matmul}^3 fp32: {med['matmul'] * 1e3:.1f} ms, {peak:.1f} GFLOP/s (peak reference)")
    print(f"model FLOPs per step (fwd+bwd): {flops / 1e9:.3g} GFLOP")
    for k in models:
        gf = flops / med[k] / 1e9
        spread = f"[{min(times[k]) * 1e3:.1f}-{max(times[k]) * 1e3:.1f}]"
        print(f"{k}: median {med[k] * 1e3:.1f} ms {spread}, {gf:.1f} GFLOP/s = {gf / peak:.0%} of matmul peak")
    print_ratios(times, [k for k in models if k != "mmformer"])


if __name__ == "__main__":
    main()

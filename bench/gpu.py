"""One-GPU performance check: bf16 MFU of a ViT-S/16 and a 6+6-layer d512 encoder–decoder training step,
padded vs packed, eager vs ``torch.compile``; greedy decoding of that encoder–decoder eager, compiled and as
CUDA graphs; and a 1-GPU FSDP smoke fit of a recipe; under 5 minutes.

MFU = model FLOPs per step / step time / the card's bf16 dense peak. FLOPs are counted, not estimated:
one step runs under ``torch.utils.flop_counter.FlopCounterMode`` (matmuls, convolutions and attention,
forward and backward), so the figure follows whatever the model really computes. The peak comes from
a table of datasheet bf16 dense figures by device name (``--peak-tflops`` overrides it); a measured
bf16 matmul probe is printed beside it as the attainable ceiling.

Padded vs packed (encoder–decoder): the same real tokens, as right-padded rows (lengths spread over
[L/4, L], a boolean key-padding mask on the source, which moves SDPA off the FlashAttention kernel) and
packed end to end into full rows fed without a mask (only the last row's tail is pad; the loss ignores
it). The packed rows here carry no per-document mask, so they measure the kernel path and the padding
saved, not a numerically equal packed model (that is ``bench/packing.py``'s job, issue #17 item 2).
Both are reported as real tokens/s.

Decoding (``GenerationConfig``): greedy, fixed length (``min_new_tokens = max_new_tokens``, so every variant
runs the same steps), bf16 weights, eager (growing KV cache) against the static cache's step under
``torch.compile`` and under ``mode="reduce-overhead"`` (``cuda_graphs=True``: each step one graph replay, the
first step eager so the cache's buffers exist before the graphs); generated tokens/s per variant.

Timing: warm-up steps (compilation included there), then ``--iters`` steps between CUDA synchronizes;
the mean step time is reported.

Run:
    python bench/gpu.py              # one CUDA GPU; about 3-4 minutes on an H100-class card
    python bench/gpu.py --smoke      # tiny sizes on CPU (or GPU), compile backend 'eager': seconds

Lines: ``<workload> (<variant>): <ms>/step, <tokens/s>, <TFLOP/s>, MFU <x>%``, then
``ratio vs padded: X`` (packed real tokens/s over padded) and ``ratio vs eager: X`` (compiled over eager);
decoding: ``decode greedy ... (<variant>): <ms>/call, <tokens/s>`` and ``ratio vs eager (decode <variant>): X``.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.flop_counter import FlopCounterMode

import mmformer.decoding.stepper as stepper
from mmformer.backbone import BackboneConfig, Decoder, Encoder
from mmformer.decoding import GenerationConfig, generate
from mmformer.models.seq2seq import Seq2Seq
from mmformer.tokenizers.text import TextTokenizer

ROOT = Path(__file__).resolve().parents[1]
PAD = 0  # the text tokenizer's pad id in this bench (ids are drawn from [1, V))
# bf16 dense (no sparsity) tensor-core peaks from the vendors' datasheets, TFLOP/s; first match wins.
PEAK_BF16_TFLOPS = [("H200", 989.0), ("H100 PCIe", 756.0), ("H100", 989.0), ("GH200", 989.0), ("B200", 2250.0),
                    ("A100", 312.0), ("A800", 312.0), ("L40S", 362.0), ("L40", 181.0), ("L4", 121.0),
                    ("A10G", 70.0), ("A10", 125.0), ("4090", 165.0), ("3090", 71.0), ("V100", 125.0)]

Step = Callable[[], None]


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def datasheet_peak(device: torch.device) -> float | None:
    """The card's bf16 dense peak in FLOP/s from :data:`PEAK_BF16_TFLOPS`, or None when unknown (CPU)."""
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    return next((tf * 1e12 for key, tf in PEAK_BF16_TFLOPS if key in name), None)


def matmul_probe(device: torch.device, n: int, dtype: torch.dtype) -> float:
    """Measured FLOP/s of an ``n x n`` matmul in ``dtype``: the attainable ceiling on this device."""
    a, b = torch.randn(n, n, device=device, dtype=dtype), torch.randn(n, n, device=device, dtype=dtype)
    reps = 20 if device.type == "cuda" else 2
    a @ b
    sync(device)
    t0 = time.perf_counter()
    for _ in range(reps):
        a @ b
    sync(device)
    return 2 * n**3 * reps / (time.perf_counter() - t0)


def count_flops(step: Step) -> float:
    """FLOPs of one call of ``step`` (forward + backward), counted by the dispatcher."""
    with FlopCounterMode(display=False) as counter:
        step()
    return float(counter.get_total_flops())


def time_step(step: Step, warmup: int, iters: int, device: torch.device) -> float:
    """Mean seconds per step after ``warmup`` untimed steps (which absorb compilation)."""
    for _ in range(warmup):
        step()
    sync(device)
    t0 = time.perf_counter()
    for _ in range(iters):
        step()
    sync(device)
    return (time.perf_counter() - t0) / iters


def train_step(model: nn.Module, loss_fn: Callable[[nn.Module], Tensor], device: torch.device,
               compile_backend: str | None = None) -> Step:
    """One bf16-autocast training step (fp32 master weights, fused AdamW where available); with a
    ``compile_backend`` the forward + loss is ``torch.compile``'d as one function (backward through AOT)."""
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, fused=device.type == "cuda")
    forward = (lambda: loss_fn(model)) if compile_backend is None else \
        torch.compile(lambda: loss_fn(model), backend=compile_backend)

    def step() -> None:
        opt.zero_grad(set_to_none=True)
        with torch.autocast(device.type, dtype=torch.bfloat16):
            loss = forward()
        loss.backward()
        opt.step()

    return step


def vit_workload(a: argparse.Namespace, device: torch.device) -> tuple[nn.Module, Callable[[nn.Module], Tensor], int]:
    """ViT-S/16 (mmformer's, built from timm's config) on random images: ``(model, loss_fn, tokens/step)``."""
    import timm

    from mmformer.models.timm_weights import classifier_from_timm

    timm_model = timm.create_model("vit_small_patch16_224", pretrained=False, img_size=a.image, num_classes=1000,
                                   **({"depth": 2} if a.smoke else {}))
    model = classifier_from_timm(timm_model).to(device).train()
    x = torch.randn(a.vit_batch, 3, a.image, a.image, device=device)
    y = torch.randint(0, 1000, (a.vit_batch,), device=device)
    tokens = a.vit_batch * ((a.image // 16) ** 2 + 1)
    return model, lambda m: F.cross_entropy(m(x), y), tokens


def seq2seq_model(a: argparse.Namespace, device: torch.device) -> Seq2Seq:
    """Pre-norm encoder–decoder, ``a.layers`` + ``a.layers`` blocks of width ``a.dim``, tied embeddings."""
    cfg = dict(depth=a.layers, dim=a.dim, num_heads=a.dim // 64, mlp_ratio=4.0, mlp="gelu")
    src = TextTokenizer(a.dim, a.vocab, max_len=a.seq, positions="sinusoidal", scale=True, pad_id=PAD)
    tgt = TextTokenizer(a.dim, a.vocab, max_len=a.seq, positions="sinusoidal", scale=True, pad_id=PAD)
    return Seq2Seq(src, Encoder(BackboneConfig(**cfg)), tgt, Decoder(BackboneConfig(**cfg))).to(device).train()


def seq2seq_batches(a: argparse.Namespace, device: torch.device) -> dict[str, tuple[Tensor, Tensor, int]]:
    """The same real tokens padded and packed: ``{kind: (source (R, L), target (R, L), real tokens)}``.

    Padded rows hold one sample each, lengths uniform in [L/4, L], pad after; packed rows concatenate
    every sample's tokens end to end and cut them into full rows of L (the last row padded).
    """
    g = torch.Generator().manual_seed(0)
    b, n = a.seq2seq_batch, a.seq

    def padded() -> tuple[Tensor, list[Tensor]]:
        lengths = torch.randint(n // 4, n + 1, (b,), generator=g)
        ids = torch.randint(1, a.vocab, (b, n), generator=g)
        ids = ids.masked_fill(torch.arange(n)[None] >= lengths[:, None], PAD)
        return ids, [row[:k] for row, k in zip(ids, lengths.tolist())]

    def pack(samples: list[Tensor]) -> Tensor:
        flat = torch.cat(samples)
        rows = -(-flat.numel() // n)
        return torch.cat([flat, flat.new_full((rows * n - flat.numel(),), PAD)]).view(rows, n)

    (src, src_rows), (tgt, tgt_rows) = padded(), padded()
    real = int((src != PAD).sum() + (tgt != PAD).sum())
    ps, pt = pack(src_rows), pack(tgt_rows)
    rows = max(ps.shape[0], pt.shape[0])  # equal row counts: one source row per target row
    ps, pt = (F.pad(x, (0, 0, 0, rows - x.shape[0]), value=PAD) for x in (ps, pt))
    return {"padded": (src.to(device), tgt.to(device), real), "packed": (ps.to(device), pt.to(device), real)}


def seq2seq_loss(source: Tensor, target: Tensor, packed: bool) -> Callable[[Seq2Seq], Tensor]:
    """Teacher-forced cross-entropy (pads ignored); the first target column plays bos.

    ``packed``: the source goes in without a padding mask (``mask=False``), so the encoder and the
    cross-attention run SDPA unmasked (FlashAttention on a GPU); the decoder is causal and unmasked
    either way. Padded: the source's boolean key-padding mask reaches both.
    """
    def loss(m: Seq2Seq) -> Tensor:
        memory = m.encoder(m.source_tokenizer(source, mask=not packed))
        logits = m.decode(target[:, :-1], memory).logits
        return F.cross_entropy(logits.flatten(0, 1).float(), target[:, 1:].flatten(), ignore_index=PAD)
    return loss


def measure(name: str, model: nn.Module, loss_fn: Callable[[nn.Module], Tensor], tokens: int,
            a: argparse.Namespace, device: torch.device, peak: float) -> dict[str, float]:
    """Eager and compiled step times of one workload, printed with tokens/s and MFU; returns seconds by variant."""
    flops = count_flops(train_step(model, loss_fn, device))  # eager, one step: the model's FLOPs
    out: dict[str, float] = {}
    for variant in a.variants:
        backend = None if variant == "eager" else a.compile_backend
        t0 = time.perf_counter()
        sec = time_step(train_step(model, loss_fn, device, backend), a.warmup, a.iters, device)
        out[variant] = sec
        print(f"{name} ({variant}): {sec * 1e3:.1f} ms/step, {tokens / sec:,.0f} tokens/s, "
              f"{flops / sec / 1e12:.1f} TFLOP/s, MFU {flops / sec / peak:.1%} "
              f"[{flops / 1e9:.1f} GFLOP/step, {time.perf_counter() - t0:.0f} s incl. warm-up]", flush=True)
    if len(out) == 2:
        print(f"ratio vs eager ({name}): {out['eager'] / out['compiled']:.2f}")
    return out


DECODE_VARIANTS = {"eager": {}, "compiled": {"compile": True}, "cuda_graphs": {"cuda_graphs": True}}


def measure_decode(a: argparse.Namespace, device: torch.device) -> dict[str, float]:
    """Greedy decoding of the encoder–decoder (random bf16 weights, ``a.decode_tokens`` new tokens for each of
    ``a.decode_batch`` sources): seconds per ``generate`` call by variant, printed with tokens/s."""
    stepper.COMPILE_BACKEND = a.compile_backend  # --smoke: 'eager' (dynamo traces, no inductor build)
    model = seq2seq_model(a, device).eval().to(torch.bfloat16)
    g = torch.Generator().manual_seed(1)
    source = torch.randint(1, a.vocab, (a.decode_batch, a.seq // 2), generator=g).to(device)
    n, out = a.decode_tokens, {}
    for variant, extra in DECODE_VARIANTS.items():
        cfg = GenerationConfig(strategy="greedy", max_new_tokens=n, min_new_tokens=n, bos_id=1, eos_id=2, pad_id=PAD,
                               **extra)
        t0 = time.perf_counter()
        with torch.no_grad():
            sec = time_step(lambda cfg=cfg: generate(model, source, cfg), a.warmup, max(a.iters // 4, 1), device)
        out[variant] = sec
        print(f"decode greedy {a.layers}+{a.layers} d{a.dim} b{a.decode_batch} x{n} ({variant}): "
              f"{sec * 1e3:.1f} ms/call, {a.decode_batch * n / sec:,.0f} tokens/s "
              f"[{time.perf_counter() - t0:.0f} s incl. warm-up]", flush=True)
    for variant in out:
        if variant != "eager":
            print(f"ratio vs eager (decode {variant}): {out['eager'] / out[variant]:.2f}")
    return out


def fsdp_fit(a: argparse.Namespace) -> int:
    """``mmformer fit`` of the digits recipe (no download) on 1 GPU under FSDP; returns the exit code.

    ``--smoke`` runs it on the CPU trainer instead (FSDP needs CUDA), 2 steps: the same command path.
    """
    trainer = "configs/trainer/cpu.yaml" if a.smoke else "configs/trainer/fsdp.yaml"
    with tempfile.TemporaryDirectory() as root:
        cmd = [sys.executable, "-m", "mmformer", "fit", "--config", "tasks/image_classification_digits.yaml",
               "--trainer", trainer, "--trainer.devices", "1", "--trainer.max_steps", str(a.fit_steps),
               "--trainer.limit_val_batches", "0",
               "--trainer.enable_progress_bar", "false",
               "--trainer.default_root_dir", root]
        t0 = time.perf_counter()
        done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=a.fit_timeout,
                              env={**os.environ, "PYTHONPATH": str(ROOT)})
    tail = (done.stdout + done.stderr).strip().splitlines()[-15:]
    status = "ok" if done.returncode == 0 else f"FAILED (exit {done.returncode})"
    print(f"fsdp fit ({trainer}, {a.fit_steps} steps): {status} in {time.perf_counter() - t0:.0f} s")
    if done.returncode != 0:
        print("\n".join(tail))
    return done.returncode


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--smoke", action="store_true", help="tiny sizes, CPU allowed, compile backend 'eager'")
    p.add_argument("--peak-tflops", type=float, default=0.0, help="the card's bf16 dense peak (0: datasheet table)")
    p.add_argument("--image", type=int, default=224)
    p.add_argument("--vit-batch", type=int, default=256)
    p.add_argument("--seq2seq-batch", type=int, default=128)
    p.add_argument("--seq", type=int, default=256, help="source and target row length")
    p.add_argument("--dim", type=int, default=512)
    p.add_argument("--layers", type=int, default=6, help="encoder layers = decoder layers")
    p.add_argument("--vocab", type=int, default=32000)
    p.add_argument("--warmup", type=int, default=5, help="untimed steps (compilation happens here)")
    p.add_argument("--iters", type=int, default=20)
    p.add_argument("--variants", nargs="+", default=["eager", "compiled"], choices=["eager", "compiled"])
    p.add_argument("--compile-backend", default="inductor")
    p.add_argument("--decode-batch", type=int, default=64)
    p.add_argument("--decode-tokens", type=int, default=64)
    p.add_argument("--skip-decode", action="store_true")
    p.add_argument("--fit-steps", type=int, default=30)
    p.add_argument("--fit-timeout", type=int, default=240)
    p.add_argument("--skip-fit", action="store_true")
    a = p.parse_args()
    if a.smoke:
        a.image, a.vit_batch, a.seq2seq_batch, a.seq, a.dim, a.layers, a.vocab = 32, 2, 4, 16, 64, 1, 100
        a.decode_batch, a.decode_tokens = 2, 6
        a.warmup, a.iters, a.compile_backend, a.fit_steps = 1, 1, "eager", 2
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.type != "cuda" and not a.smoke:
        raise SystemExit("bench/gpu.py needs a CUDA GPU (torch.cuda.is_available() is False); "
                         "run it with --smoke for a CPU check of the script itself")
    torch.manual_seed(0)
    torch.backends.cuda.matmul.allow_tf32 = True
    started = time.perf_counter()

    probe = matmul_probe(device, 8192 if device.type == "cuda" else 256, torch.bfloat16)
    peak = a.peak_tflops * 1e12 or datasheet_peak(device) or probe
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    print(f"torch {torch.__version__}, {name}, bf16 peak {peak / 1e12:.0f} TFLOP/s "
          f"({'given' if a.peak_tflops else 'datasheet' if datasheet_peak(device) else 'measured probe'}), "
          f"bf16 matmul probe {probe / 1e12:.1f} TFLOP/s = {probe / peak:.0%} of it", flush=True)

    model, loss_fn, tokens = vit_workload(a, device)
    measure(f"ViT-S/16 {a.image}px b{a.vit_batch}", model, loss_fn, tokens, a, device, peak)
    del model

    batches = seq2seq_batches(a, device)
    per_kind: dict[str, dict[str, float]] = {}
    for kind, (src, tgt, real) in batches.items():
        model = seq2seq_model(a, device)
        label = f"enc-dec {a.layers}+{a.layers} d{a.dim} {kind} {tuple(src.shape)}"
        secs = measure(label, model, seq2seq_loss(src, tgt, kind == "packed"), real, a, device, peak)
        per_kind[kind] = {v: real / sec for v, sec in secs.items()}
        del model
    for v in a.variants:
        print(f"ratio vs padded (enc-dec {v}, real tokens/s): {per_kind['packed'][v] / per_kind['padded'][v]:.2f}")

    if not a.skip_decode:
        measure_decode(a, device)
    code = 0 if a.skip_fit else fsdp_fit(a)
    total = time.perf_counter() - started
    print(f"total {total:.0f} s" + ("" if total < 300 or a.smoke else " (over the 5-minute budget: lower --iters)"))
    if code:
        raise SystemExit(code)


if __name__ == "__main__":
    main()

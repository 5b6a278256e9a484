"""Training from streaming shards vs from memory: samples/s and peak memory at the same batch and workers.

    python bench/streaming.py                 # 200k 16x16 images, 300 steps per mode (minutes)
    python bench/streaming.py --smoke         # 2k images, a few steps: seconds

Generates an ImageFolder of small PNGs (cached under ``--root``), prepares it as shards twice with
``mmformer prepare`` (a no-op when done): the PNG files as they are, and ``--decode``d (their pixels), then
trains the digits recipe's ViT for ``--steps`` steps three times, each in its own process so peak memory
is its own: reading ``ImageFolderData(root)`` (every image decoded into memory first), and
``ImageFolderData(shards=...)`` from each kind of shards (PNGs decoded per sample in the workers, or
pixels read as they are).
Prints each mode's samples/s (steps after ``--warmup``) and peak memory (the proportional set size of the
process and all its DataLoader workers, summed, sampled every second: reading smaps_rollup walks the page
tables, and every 0.25 s it took ~20 % of a core from training in both modes, py-spy showed),
then ``ratio vs in-memory (<shards>): X`` = streaming samples/s / in-memory samples/s for each kind of
shards. The bar of issue #15: peak RSS of the streaming run <= 3 GB (measured as the PSS of the whole
process tree: every page counted once) and X >= 0.9.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DIGITS = ROOT / "tasks" / "image_classification_digits.yaml"
MODES = ("memory", "png-shards", "decoded-shards")


def generate(root: Path, n: int, size: int) -> Path:
    """``n`` random ``size``x``size`` gray PNGs in 10 class folders (train) plus a small test split; cached."""
    from PIL import Image
    from tqdm import tqdm

    done = root / f".done-{n}-{size}"
    if done.exists():
        return root
    rng = np.random.default_rng(0)
    for split, count in (("train", n), ("test", max(10, n // 100))):
        for c in range(10):
            (root / split / str(c)).mkdir(parents=True, exist_ok=True)
        for i in tqdm(range(count), desc=f"generate {split}", file=sys.stderr, mininterval=1.0):
            c = i % 10
            # class-dependent brightness, so the model has something to learn
            pixels = rng.integers(0, 128, (size, size), dtype=np.uint8) + np.uint8(c * 12)
            Image.fromarray(pixels, "L").save(root / split / str(c) / f"{i:07d}.png")
    done.touch()
    return root


def tree_pss_bytes(pid: int) -> int:
    """Proportional set size of ``pid`` and all its descendants (DataLoader workers), from /proc.

    PSS splits each shared page among the processes sharing it, so the sum is the memory the whole run
    holds: forked workers sharing the parent's in-memory dataset are not counted once per worker (summed
    RSS would be), and no worker is left out (the largest child's peak RSS alone would)."""
    total, todo = 0, [pid]
    while todo:
        p = todo.pop()
        try:
            with open(f"/proc/{p}/smaps_rollup") as f:
                total += next(int(line.split()[1]) * 1024 for line in f if line.startswith("Pss:"))
            with open(f"/proc/{p}/task/{p}/children") as f:
                todo += [int(c) for c in f.read().split()]
        except (FileNotFoundError, ProcessLookupError, StopIteration):
            continue  # a worker that just exited
    return total


class PeakMemory:
    """Samples :func:`tree_pss_bytes` of this process every ``interval`` s in a thread; ``peak_gb`` is the max."""

    def __init__(self, interval: float = 1.0) -> None:
        import threading

        self.peak, self.interval, self._stop = 0, interval, threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, tree_pss_bytes(os.getpid()))
            self._stop.wait(self.interval)

    def peak_gb(self) -> float:
        self._stop.set()
        self._thread.join()
        return self.peak / 1024 ** 3


def train(args: argparse.Namespace) -> None:
    """One mode's training run (in its own process); prints a JSON line with samples/s and peak memory."""
    import pytorch_lightning as pl

    from mmformer.cli import main

    class Clock(pl.Callback):
        def on_train_batch_start(self, trainer: pl.Trainer, *rest: object) -> None:
            if trainer.global_step == args.warmup:
                self.t0 = time.perf_counter()

        def on_train_end(self, trainer: pl.Trainer, *rest: object) -> None:
            self.seconds = time.perf_counter() - self.t0

    source = {"memory": {"root": str(args.root)}, "png-shards": {"shards": str(args.shards)},
              "decoded-shards": {"shards": str(args.decoded)}}[args.mode]
    data = {"class_path": "mmformer.data.ImageFolderData",
            "init_args": {**source, "image_size": 16, "channels": 1, "batch_size": args.batch,
                          "num_workers": args.workers, "val_fraction": 0.0}}
    clock, memory = Clock(), PeakMemory()
    cli = main(["--config", str(DIGITS), "--data", json.dumps(data), f"--trainer.max_steps={args.steps}",
                "--trainer.max_epochs=-1", "--trainer.limit_val_batches=0",
                "--trainer.enable_progress_bar=false",
                f"--trainer.default_root_dir={args.out / args.mode}"], run=False)
    cli.trainer.callbacks.append(clock)
    cli.trainer.fit(cli.model, cli.datamodule)
    samples = (args.steps - args.warmup) * args.batch
    print(json.dumps({"mode": args.mode, "samples_per_s": samples / clock.seconds, "peak_pss_gb": memory.peak_gb()}))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n", type=int, default=200_000, help="training images to generate")
    p.add_argument("--size", type=int, default=16, help="image side in pixels")
    p.add_argument("--steps", type=int, default=300)
    p.add_argument("--warmup", type=int, default=20, help="steps before the clock starts")
    p.add_argument("--batch", type=int, default=256)
    p.add_argument("--workers", type=int, default=4)
    p.add_argument("--out", type=Path, default=ROOT / "data" / "bench-streaming")
    p.add_argument("--smoke", action="store_true", help="2k images, 8 steps, batch 32, no workers")
    p.add_argument("--mode", choices=MODES, help=argparse.SUPPRESS)  # one run (internal)
    args = p.parse_args()
    if args.smoke:
        args.n, args.steps, args.warmup, args.batch, args.workers = 2000, 8, 2, 32, 0
    args.root, args.shards = args.out / f"images-{args.n}-{args.size}", args.out / f"shards-{args.n}-{args.size}"
    args.decoded = args.out / f"shards-decoded-{args.n}-{args.size}"
    if args.mode is not None:
        train(args)
        return
    from mmformer.data.shards.prepare import prepare

    generate(args.root, args.n, args.size)
    prepare("imagefolder", args.root, args.shards)
    prepare("imagefolder", args.root, args.decoded, decode=True)
    results = {}
    for mode in MODES:
        cmd = [sys.executable, __file__, "--mode", mode, *sys.argv[1:]]
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        out = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=ROOT)
        if out.returncode != 0:
            sys.exit(f"{mode} run failed:\n{out.stderr[-3000:]}")
        results[mode] = json.loads(out.stdout.strip().splitlines()[-1])
        r = results[mode]
        print(f"{mode}: {r['samples_per_s']:.0f} samples/s, peak memory (PSS, process + workers) {r['peak_pss_gb']:.2f} GB "
              f"(batch {args.batch}, workers {args.workers})")
    for mode in MODES[1:]:
        print(f"ratio vs in-memory ({mode}): {results[mode]['samples_per_s'] / results['memory']['samples_per_s']:.2f}")


if __name__ == "__main__":
    main()

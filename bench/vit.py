"""ViT-S/16 training step (AdamW, fp32 CPU): mmformer against timm's ``vit_small_patch16_224``.

mmformer's model is built from the timm model with ``classifier_from_timm`` (same weights, same
logits), so both compute the same function; one step is forward, cross-entropy, backward and
an AdamW update. Warm-up, interleaved rounds with rotated order, medians.

Run:
    .venv/bin/python bench/vit.py              # 224x224, batch 8: about a minute on 2 cores
    .venv/bin/python bench/vit.py --quick      # tiny smoke run

Last line: ``ratio vs timm: X.XX`` with X = timm_time / mmformer_time (> 1: mmformer is faster).
"""

from __future__ import annotations

import argparse
import statistics
from typing import Callable

import timm
import torch
import torch.nn.functional as F
from torch import nn

from common import interleaved_times, print_ratios
from mmformer.models.timm_weights import classifier_from_timm


def make_step(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> Callable[[], None]:
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)

    def step() -> None:
        opt.zero_grad(set_to_none=True)
        F.cross_entropy(model(x), y).backward()
        opt.step()

    return step


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--image", type=int, default=224)
    p.add_argument("--repeats", type=int, default=8)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--quick", action="store_true", help="ViT-S/16 at 32x32, batch 2, 2 rounds")
    a = p.parse_args()
    if a.quick:
        a.batch, a.image, a.repeats, a.warmup = 2, 32, 2, 1
    torch.manual_seed(0)
    theirs = timm.create_model("vit_small_patch16_224", pretrained=False, img_size=a.image, num_classes=1000)
    ours = classifier_from_timm(theirs)
    x = torch.randn(a.batch, 3, a.image, a.image)
    y = torch.randint(0, 1000, (a.batch,))
    with torch.no_grad():
        diff = (ours.eval()(x) - theirs.eval()(x)).abs().max().item()
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, fp32 CPU, batch {a.batch}, "
          f"{a.image}x{a.image}, params {sum(p.numel() for p in ours.parameters()):,}, max |logit diff| {diff:.1e}")
    times = interleaved_times({"mmformer": make_step(ours.train(), x, y), "timm": make_step(theirs.train(), x, y)},
                              a.repeats, a.warmup)
    for k, v in times.items():
        print(f"{k}: median {statistics.median(v) * 1e3:.1f} ms [{min(v) * 1e3:.1f}-{max(v) * 1e3:.1f}]")
    print_ratios(times, ["timm"])


if __name__ == "__main__":
    main()

"""AdamW with linear warm-up and cosine decay, shared by every task module.

Schedules that do not fit the data get a warning when the optimizer is built (:func:`schedule_warnings`):
a warm-up of half the schedule or more (the peak lr comes late or never: keep it to ~5-10 % of the steps),
and a schedule that ends before half an epoch of the training data (max_steps sized for a smaller
corpus: most of this one is never seen; size max_steps or max_epochs by the data).
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.utils.weak import WeakIdKeyDictionary

# Each parameter's dims before a sharding wrapper flattened it: FSDP (use_orig_params) keeps the same
# Parameter objects but makes them 1-D shards, so the weight-decay split reads the dims recorded here
# (by mmformer.tasks.fsdp, before wrapping). Keyed by identity: tensors compare elementwise.
_ORIGINAL_DIMS = WeakIdKeyDictionary()


def remember_dims(module: nn.Module) -> None:
    """Records the dims of ``module``'s parameters as they are now (before sharding) for :func:`param_groups`."""
    for p in module.parameters():
        _ORIGINAL_DIMS.setdefault(p, p.dim())


def _dim(p: nn.Parameter) -> int:
    return _ORIGINAL_DIMS.get(p, p.dim())


@dataclass
class OptimConfig:
    """Optimizer and schedule; every field is a YAML key under ``model.init_args.optim``."""

    lr: float = 1e-3  # peak learning rate
    weight_decay: float = 0.05  # decoupled decay, applied to matrices only (not biases, norms, 1-D params)
    betas: tuple[float, float] = (0.9, 0.999)  # AdamW betas
    warmup_steps: int = 0  # linear warm-up steps; when 0, warmup_fraction of the run is used
    warmup_fraction: float = 0.05  # warm-up as a fraction of all optimizer steps
    min_lr_ratio: float = 0.0  # cosine floor as a fraction of lr
    schedule: str = "cosine"  # "cosine" or "constant" (after warm-up)
    layer_decay: float | None = None  # e.g. 0.75: layer-wise lr decay lr·decay^(L+1-layer) (mmformer.finetune.lr_decay)


def param_groups(model: nn.Module, weight_decay: float, layer_decay: float | None = None,
                 lr: float = 1.0) -> list[dict]:
    """Decays weight matrices and conv kernels; leaves biases, norm scales and 1-D parameters alone.

    Frozen parameters (``requires_grad=False``) are left out. With ``layer_decay``, each (layer,
    decay/no-decay) pair is its own group with ``lr = lr · layer_decay^(L+1-layer)`` (see
    :mod:`mmformer.finetune.lr_decay`); without it, the two groups take the optimizer's lr.
    """
    if layer_decay is None:
        decay, no_decay = [], []
        for p in model.parameters():
            if p.requires_grad:
                (decay if _dim(p) >= 2 else no_decay).append(p)
        return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    from mmformer.finetune.lr_decay import layer_scales

    scales, groups = layer_scales(model, layer_decay), {}
    for name, p in model.named_parameters():
        if p.requires_grad:
            wd = weight_decay if _dim(p) >= 2 else 0.0
            group = groups.setdefault((scales[name], wd), {"params": [], "weight_decay": wd, "lr": lr * scales[name]})
            group["params"].append(p)
    return list(groups.values())


def lr_factor(step: int, total: int, warmup: int, min_ratio: float, schedule: str) -> float:
    """Multiplier of the peak lr at ``step`` (0-based) of ``total`` optimizer steps."""
    if warmup > 0 and step < warmup:
        return (step + 1) / warmup
    if schedule == "constant":
        return 1.0
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * progress))


MAX_WARMUP_SHARE = 0.5  # warm-up at or above this share of the schedule is warned about
MIN_EPOCHS = 0.5  # a schedule shorter than this many epochs of the data is warned about


def epoch_steps(trainer: Any) -> float | None:
    """Optimizer steps in one epoch of the trainer's training data (after ``estimated_stepping_batches``
    has set its dataloader up), or None when unknown (an iterable dataset without a length)."""
    batches = getattr(trainer, "num_training_batches", None)
    if not isinstance(batches, (int, float)) or not math.isfinite(batches) or batches <= 0:
        return None
    return batches / max(1, int(getattr(trainer, "accumulate_grad_batches", 1) or 1))


def schedule_warnings(total: int, warmup: int, steps_per_epoch: float | None = None) -> list[str]:
    """What is far off in a schedule of ``total`` optimizer steps with ``warmup`` warm-up steps for data of
    ``steps_per_epoch`` steps an epoch (the rules in the module docstring); empty when nothing is."""
    found = []
    if warmup >= MAX_WARMUP_SHARE * total:
        found.append(f"the warm-up ({warmup} steps) is {warmup / total:.0%} of the schedule's {total} steps: the lr "
                     f"peaks late or never; set model.init_args.optim.warmup_steps to ~5-10 % of the steps "
                     f"(~{max(1, round(0.05 * total))}-{max(1, round(0.1 * total))}) or lengthen trainer.max_steps")
    if steps_per_epoch and total < MIN_EPOCHS * steps_per_epoch:
        found.append(f"the schedule ends after {total} optimizer steps, {total / steps_per_epoch:.2f} of one epoch of "
                     f"this training data ({steps_per_epoch:.0f} steps): most of the data is never seen; size "
                     f"trainer.max_steps (or max_epochs) for this data, e.g. max_steps >= {math.ceil(steps_per_epoch)}")
    return found


def build_optimizer(model: nn.Module, cfg: OptimConfig, total_steps: int,
                    steps_per_epoch: float | None = None) -> dict:
    """Lightning's ``configure_optimizers`` return value: AdamW plus a per-step LambdaLR.

    ``steps_per_epoch`` (optimizer steps in one epoch of the data, :func:`epoch_steps`) lets
    :func:`schedule_warnings` compare the schedule with the data; the warnings change nothing.
    """
    if cfg.schedule not in ("cosine", "constant"):
        raise ValueError(f"schedule must be 'cosine' or 'constant', got {cfg.schedule!r}")
    if total_steps <= 0 or total_steps == float("inf"):
        raise ValueError(
            f"the schedule needs a finite number of steps, got {total_steps}; set trainer.max_steps or max_epochs"
        )
    total = int(total_steps)
    warmup = cfg.warmup_steps or int(cfg.warmup_fraction * total)
    first_process = not (torch.distributed.is_available() and torch.distributed.is_initialized()) \
        or torch.distributed.get_rank() == 0
    for advice in schedule_warnings(total, warmup, steps_per_epoch) if first_process else []:  # once, not per rank
        warnings.warn(advice, stacklevel=2)
    groups = param_groups(model, cfg.weight_decay, cfg.layer_decay, cfg.lr)
    if not any(g["params"] for g in groups):
        raise ValueError(f"{type(model).__name__} has no trainable parameter: the finetune freeze patterns (or "
                         f"LoRA without targets) froze them all")
    opt = torch.optim.AdamW(groups, lr=cfg.lr, betas=cfg.betas)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: lr_factor(s, total, warmup, cfg.min_lr_ratio, cfg.schedule)
    )
    return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}

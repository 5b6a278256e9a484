"""``mmformer average``: one checkpoint whose weights are the mean of several (fairseq's average_checkpoints).

    mmformer average --ckpt_paths a.ckpt b.ckpt c.ckpt --output avg.ckpt
    mmformer average --last 5 --run runs/version_3 --output runs/version_3/checkpoints/avg5.ckpt
    mmformer test --config tasks/<recipe>.yaml --ckpt_path runs/version_3/checkpoints/avg5.ckpt

Floating-point ``state_dict`` tensors are averaged element-wise (accumulated in float64, written back in
their own dtype); everything else (integer buffers such as counters, the optimizer state, the stored
vocabulary...) comes from the newest checkpoint (highest ``global_step``; the last one given on a tie).
Checkpoints of different tasks, keys, shapes or vocabularies are refused with the first difference named.
``--last N`` takes the N checkpoints of a run with the highest ``global_step`` (one per step: ``last.ckpt``
and a step file of the same step count once); keep them with a ModelCheckpoint that saves every few
steps (``every_n_train_steps: 500``, ``save_top_k: -1``; see docs/checkpoints.md).
Files are read with ``torch.load(weights_only=True)`` (:func:`mmformer.checkpoint.read_checkpoint`).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Sequence

import torch
from torch import Tensor

from mmformer.checkpoint import read_checkpoint

AVERAGED_KEY = "mmformer_averaged"  # checkpoint entry: the averaged files, as strings
WRITER_KEY = "mmformer_task"  # = mmformer.tasks.checkpoint_fit.WRITER_KEY (kept free of Lightning imports)
VOCAB_KEY = "mmformer_vocab"


def _task_class(ckpt: dict[str, Any]) -> str | None:
    writer = ckpt.get(WRITER_KEY)
    return writer.get("class") if isinstance(writer, dict) else None


def _first_difference(ref: dict[str, Tensor], other: dict[str, Tensor]) -> str | None:
    """The first state_dict key (sorted) whose presence, shape or dtype differs, described; None if none."""
    for key in sorted(set(ref) | set(other)):
        if key not in other or key not in ref:
            return f"key {key!r} is only in {'the first' if key in ref else 'this'} checkpoint"
        a, b = ref[key], other[key]
        if a.shape != b.shape:
            return f"key {key!r} has shape {tuple(a.shape)} in the first checkpoint and {tuple(b.shape)} here"
        if a.dtype != b.dtype:
            return f"key {key!r} is {a.dtype} in the first checkpoint and {b.dtype} here"
    return None


def check_compatible(first: dict[str, Any], other: dict[str, Any], first_path: str, other_path: str) -> None:
    """Raises ValueError naming the first difference that makes averaging ``other`` with ``first`` meaningless."""
    task_a, task_b = _task_class(first), _task_class(other)
    if task_a and task_b and task_a != task_b:
        raise ValueError(f"cannot average checkpoints of different tasks: {first_path} is {task_a}, "
                         f"{other_path} is {task_b}")
    diff = _first_difference(first["state_dict"], other["state_dict"])
    if diff is not None:
        raise ValueError(f"cannot average {other_path} with {first_path}: {diff} (different models or settings)")
    va, vb = first.get(VOCAB_KEY), other.get(VOCAB_KEY)
    if isinstance(va, Tensor) and isinstance(vb, Tensor) and not torch.equal(va, vb):
        raise ValueError(f"cannot average {other_path} with {first_path}: they store different vocabularies "
                         f"({VOCAB_KEY}), so the same ids mean different pieces")


def average_checkpoints(paths: Sequence[str | Path]) -> dict[str, Any]:
    """The newest of ``paths`` with its floating-point state_dict tensors replaced by their mean over all.

    Reads one file at a time (memory: the running sums, the first and the newest checkpoint).
    """
    if len(paths) < 2:
        raise ValueError(f"averaging needs at least 2 checkpoints, got {len(paths)}")
    first = read_checkpoint(paths[0])
    sums = {k: v.double() for k, v in first["state_dict"].items() if torch.is_floating_point(v)}
    newest, newest_step = first, int(first.get("global_step", 0))
    for path in paths[1:]:
        ckpt = read_checkpoint(path)
        check_compatible(first, ckpt, str(paths[0]), str(path))
        for key, total in sums.items():
            total += ckpt["state_dict"][key].double()
        step = int(ckpt.get("global_step", 0))
        if step >= newest_step:  # the last given wins a tie
            newest, newest_step = ckpt, step
    state = dict(newest["state_dict"])  # non-float buffers (counters, indices) of the newest
    for key, total in sums.items():
        state[key] = (total / len(paths)).to(state[key].dtype)
    out = dict(newest)
    out["state_dict"] = state
    out[AVERAGED_KEY] = [str(p) for p in paths]
    return out


def last_checkpoints(run: str | Path, n: int) -> list[Path]:
    """The ``n`` checkpoints of a run folder (``<run>/checkpoints/*.ckpt``, or ``<run>/*.ckpt``) with the
    highest ``global_step``, oldest first; one file per step count (files of equal steps hold the same weights)."""
    run = Path(run)
    folder = run / "checkpoints" if (run / "checkpoints").is_dir() else run
    by_step: dict[int, Path] = {}
    for path in sorted(folder.glob("*.ckpt")):
        if path.name.startswith("last") or path.name.startswith("best"):
            continue  # copies of a step file (or, for best, a choice by validation: not "the last N")
        ckpt = read_checkpoint(path)
        if AVERAGED_KEY in ckpt:
            continue  # an earlier average
        by_step.setdefault(int(ckpt.get("global_step", 0)), path)
    if len(by_step) < n:
        raise ValueError(f"--last {n}: {folder} has {len(by_step)} checkpoint(s) of distinct steps "
                         f"({', '.join(p.name for _, p in sorted(by_step.items())) or 'none'}); keep more with "
                         f"a ModelCheckpoint(every_n_train_steps=..., save_top_k=-1) (docs/checkpoints.md)")
    return [by_step[s] for s in sorted(by_step)[-n:]]


def save_checkpoint(ckpt: dict[str, Any], output: str | Path) -> Path:
    """Writes ``ckpt`` atomically (a temporary file renamed), so a crash never leaves half a checkpoint."""
    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    tmp = output.with_name(output.name + ".tmp")
    torch.save(ckpt, tmp)
    os.replace(tmp, output)
    return output

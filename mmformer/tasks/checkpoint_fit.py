"""Does a checkpoint fit the task that loads it? Say who wrote it and what differs, before Lightning's
raw ``Missing key(s)`` / ``size mismatch`` wall.

Every checkpoint a task saves records its writer (:func:`describe`: the task class and the config of
each backbone stack, plain values only, so it loads with ``weights_only=True``); :func:`check_fits`
compares a checkpoint's weights with the task's own before they load.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from torch import nn

from mmformer.backbone import Decoder, Encoder

WRITER_KEY = "mmformer_task"  # checkpoint entry: {"class": dotted task class, "backbones": {name: config}}


def describe(task: nn.Module) -> dict[str, Any]:
    """The task's class and each backbone stack's config by module name (e.g. ``model.backbone``)."""
    stacks = {name: asdict(m.config) for name, m in task.named_modules() if isinstance(m, (Encoder, Decoder))}
    return {"class": f"{type(task).__module__}.{type(task).__qualname__}", "backbones": stacks}


def _differences(written: dict[str, Any], built: dict[str, Any]) -> list[str]:
    out = []
    if written.get("class") != built["class"]:
        out.append(f"task: checkpoint {written.get('class')}, this run {built['class']}")
    old, new = written.get("backbones", {}), built["backbones"]
    for name in sorted(old.keys() | new.keys()):
        if name not in old or name not in new:
            out.append(f"{name}: {'only in this run' if name in new else 'only in the checkpoint'}")
            continue
        fields = [f"{k} {old[name].get(k)!r} vs {v!r}" for k, v in new[name].items() if old[name].get(k) != v]
        if fields:
            out.append(f"{name} (checkpoint vs this run): {', '.join(fields)}")
    return out


def _listed(label: str, items: list[str], n: int = 4) -> str:
    return f"{len(items)} {label} ({', '.join(items[:n])}{', ...' if len(items) > n else ''})"


def check_fits(task: nn.Module, checkpoint: dict[str, Any]) -> None:
    """Raises a ValueError naming the checkpoint's writer and the differences when its ``state_dict``
    does not fit ``task`` (missing or unexpected keys, other shapes); returns quietly when it fits."""
    state, own = checkpoint.get("state_dict", {}), task.state_dict()
    if any("_fsdp_wrapped_module" in k for k in own):  # sharded views: Lightning's FSDP loader checks these
        return
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    shapes = [f"{k} {tuple(state[k].shape)} vs {tuple(own[k].shape)}" for k in own
              if k in state and hasattr(state[k], "shape") and state[k].shape != own[k].shape]
    if not (missing or unexpected or shapes):
        return
    built = describe(task)
    written = checkpoint.get(WRITER_KEY)
    if isinstance(written, dict):
        diffs = _differences(written, built)
        who = f"it was written by {written.get('class')}"
        what = ("; ".join(diffs) if diffs else "the same task and backbone sizes, so other settings differ "
                "(tokenizer, heads, vocabulary or class counts)")
    else:
        who, what = "it does not record its writer (written by an older mmformer)", ""
    parts = [_listed(label, items) for label, items in (("missing keys", missing), ("unexpected keys", unexpected),
                                                        ("shape mismatches (checkpoint vs this run)", shapes))
             if items]
    raise ValueError(
        f"the checkpoint does not fit {built['class'].rsplit('.', 1)[-1]} as this run configures it: {who}"
        f"{'; ' + what if what else ''}. Weights: {'; '.join(parts)}. Run with the recipe and overrides it was "
        f"trained with (its config.yaml is saved beside its checkpoints)"
    )

"""Choosing parameters by name, and freezing them.

A pattern is a shell-style glob over full parameter names (``fnmatch``: ``model.encoder.*``,
``model.backbone.blocks.[0-5].*``) or, prefixed with ``re:``, a Python regular expression that must
match the whole name (``re:model\\.backbone\\.blocks\\.([0-9]|1[01])\\..*``).
"""

from __future__ import annotations

import re
from fnmatch import fnmatchcase
from typing import Iterable, Sequence

from torch import nn


def _matcher(pattern: str):
    if pattern.startswith("re:"):
        try:
            rx = re.compile(pattern[3:])
        except re.error as e:
            raise ValueError(f"pattern {pattern!r} is not a valid regular expression: {e}") from e
        return lambda name: rx.fullmatch(name) is not None
    return lambda name: fnmatchcase(name, pattern)


def match_names(names: Iterable[str], patterns: Sequence[str], *, strict: bool = True,
                what: str = "parameter") -> list[str]:
    """The ``names`` that any of ``patterns`` matches, in their original order.

    Args:
        names: candidate names (parameter or module names).
        patterns: globs, or regular expressions prefixed with ``re:``.
        strict: a pattern that matches nothing is an error (a typo would otherwise silently train
            everything).
        what: what the names are, for the error message.
    Raises:
        ValueError: (strict) a pattern matching no name; the message shows a few names to pick from.
    """
    names = list(names)
    matchers = [(p, _matcher(p)) for p in patterns]
    hit = {p: False for p in patterns}
    out = []
    for name in names:
        found = [p for p, m in matchers if m(name)]
        for p in found:
            hit[p] = True
        if found:
            out.append(name)
    dead = [p for p, ok in hit.items() if not ok]
    if strict and dead:
        example = ", ".join(names[:4] + (["..."] if len(names) > 4 else []))
        raise ValueError(f"{what} pattern {dead[0]!r} matches no {what} name (names look like: {example}); "
                         f"patterns are globs over full names, e.g. 'model.backbone.blocks.[0-5].*', or 're:<regex>'")
    return out


def freeze(root: nn.Module, patterns: Sequence[str]) -> list[str]:
    """Sets ``requires_grad=False`` on every parameter of ``root`` whose name a pattern matches.

    Frozen parameters are left out of the optimizer (:func:`mmformer.tasks.optim.param_groups` takes
    trainable ones only). Their modules keep their train/eval mode: dropout and drop-path still act, and
    norms here are LayerNorm/RMSNorm, which hold no running statistics, so nothing frozen changes.

    Returns:
        the frozen parameter names.
    Raises:
        ValueError: a pattern matching no parameter.
    """
    params = dict(root.named_parameters())
    names = match_names(params, patterns)
    for name in names:
        params[name].requires_grad_(False)
    return names


def count_trainable(root: nn.Module) -> tuple[int, int]:
    """``(trainable, total)`` parameter counts of ``root`` (tied parameters counted once)."""
    params = list(root.parameters())  # named_parameters/parameters skip duplicates (tied weights)
    return sum(p.numel() for p in params if p.requires_grad), sum(p.numel() for p in params)

"""Normalization layers by name: LayerNorm and RMSNorm (torch's own), or any importable class."""

from __future__ import annotations

import importlib
from typing import Callable, Union

from torch import nn

# A norm is built as ``factory(dim)``; configs hold names so they serialize to YAML.
NormFactory = Callable[[int], nn.Module]
NormSpec = Union[str, NormFactory]

NORMS: dict[str, type[nn.Module]] = {"layernorm": nn.LayerNorm, "rmsnorm": nn.RMSNorm}


def resolve(spec: str | Callable, table: dict[str, Callable], kind: str) -> Callable:
    """Turns a short name, a dotted import path (``my_pkg.layers.MyNorm``) or a callable into a callable."""
    if callable(spec):
        return spec
    if spec in table:
        return table[spec]
    if "." in spec:
        module, _, attr = spec.rpartition(".")
        try:
            return getattr(importlib.import_module(module), attr)
        except (ImportError, AttributeError) as e:
            raise ValueError(f"cannot import {kind} {spec!r}: {e}") from e
    raise ValueError(f"unknown {kind} {spec!r}; choose one of {sorted(table)} or give a dotted import path")


def make_norm(spec: NormSpec, dim: int, eps: float = 1e-6) -> nn.Module:
    """Builds a norm over the last ``dim`` channels. Named norms get ``eps``; a callable gets only ``dim``."""
    if isinstance(spec, str) and spec in NORMS:
        return NORMS[spec](dim, eps=eps)
    return resolve(spec, NORMS, "norm")(dim)

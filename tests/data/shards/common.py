"""Helpers of the shard tests: prepare a source, and compare whole batches (tensors, strings, tuples)."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import torch

from mmformer.data.shards.prepare import prepare


def prepare_splits(kind: str, sources: dict[str, Path], out: Path, chunk_bytes: str = "2KB") -> str:
    """``mmformer prepare`` of one file per split into ``out/<split>``; returns ``out`` (the ``shards=`` value)."""
    for split, source in sources.items():
        prepare(kind, source, out / split, chunk_bytes=chunk_bytes, progress=False)
    return str(out)


def assert_equal(a: Any, b: Any, where: str = "batch") -> None:
    """Exact equality of nested batches: tensors element for element, dicts by key, sequences in order."""
    assert type(a) is type(b), f"{where}: {type(a).__name__} vs {type(b).__name__}"
    if isinstance(a, torch.Tensor):
        assert a.dtype == b.dtype and a.shape == b.shape and torch.equal(a, b), where
    elif dataclasses.is_dataclass(a):  # e.g. AudioBatch
        assert_equal(dataclasses.asdict(a), dataclasses.asdict(b), where)
    elif isinstance(a, dict):
        assert a.keys() == b.keys(), f"{where}: keys {sorted(a)} vs {sorted(b)}"
        for k in a:
            assert_equal(a[k], b[k], f"{where}[{k!r}]")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), f"{where}: {len(a)} vs {len(b)} items"
        for i, (x, y) in enumerate(zip(a, b)):
            assert_equal(x, y, f"{where}[{i}]")
    else:
        assert a == b, f"{where}: {a!r} vs {b!r}"


def epoch(loader: Any, e: int) -> list[Any]:
    """Every batch of epoch ``e`` of a training loader."""
    sampler = loader.sampler if hasattr(loader.sampler, "set_epoch") else loader.batch_sampler
    sampler.set_epoch(e)
    return list(loader)

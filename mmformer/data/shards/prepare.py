"""Converts a source into streaming shards, once (the ``mmformer prepare`` command is :mod:`mmformer.cli.prepare`).

Each split is written to ``<out>/<split>`` (``<out>`` itself for single-file sources) through a
``.partial`` folder renamed when complete: rerunning on finished output is a no-op (the index records
the source's fingerprint), and an interrupted run starts that split again cleanly. Copy or sync the
finished folder to object storage (``s3://...``) to train from it on many nodes.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, Iterable

from mmformer.data.shards.format import finished, write_shards
from mmformer.data.shards.sources import SOURCES, fingerprint, image_folder


def _progress(items: Iterable[Any], total: int | None, desc: str) -> Iterable[Any]:
    from tqdm import tqdm

    return tqdm(items, total=total, desc=f"prepare {desc}", unit="sample", file=sys.stderr, mininterval=1.0)


def prepare(kind: str, source: str | Path, out: str | Path, chunk_bytes: str = "64MB",
            progress: bool = True, decode: bool = False) -> dict[str, Path]:
    """Writes the shards of every split of ``source`` under ``out``; returns split name → shard folder.

    Args:
        kind: one of :data:`~mmformer.data.shards.sources.SOURCES` (``imagefolder``, ``idx``, ``nemo``,
            ``pairs``, ``d4rl``, ``manifest``).
        source: the folder or file to read.
        out: output folder.
        chunk_bytes: litdata chunk size (64MB suits object storage; smaller chunks shuffle finer).
        progress: show a progress bar per split.
        decode: store decoded pixels instead of the image files (``imagefolder`` only; for small images).
    """
    if kind not in SOURCES:
        raise ValueError(f"unknown source kind {kind!r}; choose one of {', '.join(SOURCES)}")
    if decode and kind != "imagefolder":
        raise ValueError(f"--decode applies to imagefolder sources, not {kind!r}")
    src, out = Path(source), Path(out)
    if not src.exists():
        raise FileNotFoundError(f"source {src} does not exist")
    stamp = {**fingerprint(src), **({"decode": True} if decode else {})}  # decoded shards are another output
    splits = image_folder(src, decode=True) if decode else SOURCES[kind](src)
    done: dict[str, Path] = {}
    for split in splits:
        folder = out if split.name == "all" else out / split.name
        split.info.source = {**stamp, "split": split.name}
        if finished(folder, split.info.source) is not None:
            print(f"{folder}: already prepared from {src}, nothing to do", file=sys.stderr)
        else:
            write_shards(folder, split.samples(), split.info, split.count, chunk_bytes,
                         _progress if progress else None)
        done[split.name] = folder
    return done

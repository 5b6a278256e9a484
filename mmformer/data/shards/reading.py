"""What every DataModule's ``shards=`` needs: the view of a split, its small fields as columns, and its
encoded files as stand-ins for paths.

A DataModule reads ``<shards>/<split>`` (``train``, ``val``, ``test``) prepared by ``mmformer prepare``.
Small fields (texts, durations, labels, row names) are read once in ``setup`` — the vocabulary is trained
on them and batches are length-bucketed by them, exactly as from the source files — while encoded files
(images, audio) stay in the shards: :class:`ShardFile` stands where the in-memory path holds a file path,
and the readers (:func:`~mmformer.data.readers.image_files.load_image`,
:func:`~mmformer.data.readers.audio.load_audio`) decode its bytes per sample, in the DataLoader's workers.
So the same dataset classes, transforms, samplers and resume serve files and shards, and a run from
shards sees the batches of the run from the source.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, NamedTuple

import numpy as np

from mmformer.data.shards.dataset import ShardView
from mmformer.data.shards.format import COLUMNS, INDEX, ShardError, is_remote, read_columns_file

if TYPE_CHECKING:
    from mmformer.data.readers.manifest import ManifestTable


def split_uri(shards: str, split: str) -> str:
    """``<shards>/<split>``: where ``mmformer prepare`` put that split (a folder or a URI)."""
    return f"{str(shards).rstrip('/')}/{split}"


def split_view(shards: str, split: str, kind: str, fields: Iterable[str] = ()) -> ShardView:
    """The checked view of ``<shards>/<split>`` (kind, fields and chunks verified now, before training).

    Raises:
        ShardError: the split is missing, truncated, of another kind, or unreadable (names it).
    """
    return ShardView(split_uri(shards, split), kind, fields)


def has_split(shards: str, split: str) -> bool:
    """Whether ``<shards>/<split>`` was prepared (a local index, or any remote URI: its errors come on reading)."""
    uri = split_uri(shards, split)
    return is_remote(uri) or (Path(uri.removeprefix("file://")) / INDEX).is_file()


def read_columns(view: ShardView, names: Iterable[str]) -> dict[str, list[Any]]:
    """``name → [value of every sample]`` for small fields, in sample order: from ``columns.json`` (no chunk is
    read), or for shards without it, by one pass over the samples."""
    names = list(names)
    if set(names) <= set(view.info.columns):
        stored = read_columns_file(view.uri, view.cache_dir)
        if any(len(stored.get(n, ())) != len(view) for n in names):
            raise ShardError(f"{view.uri}/{COLUMNS} does not hold {names} for its {len(view)} samples; prepare the "
                             f"shards again")
        return {n: stored[n] for n in names}
    out: dict[str, list[Any]] = {n: [] for n in names}
    for i in range(len(view)):
        sample = view[i]
        for n in names:
            out[n].append(sample[n])
    return out


class ShardFile(NamedTuple):
    """One encoded file inside shards, standing in for its path: ``read_bytes()`` fetches it (in the worker
    that decodes it); ``str()`` names it in errors."""

    view: ShardView
    row: int
    field: str

    def read_bytes(self) -> bytes:
        data = self.view[self.row][self.field]
        return data if isinstance(data, bytes) else np.asarray(data).tobytes()  # litdata may hand back uint8

    def __str__(self) -> str:
        return f"{self.view.uri} sample {self.row} ({self.field})"


def shard_files(view: ShardView, field: str) -> list[ShardFile]:
    """The ``field`` file of every sample of ``view``, as :class:`ShardFile` stand-ins (nothing is read)."""
    return [ShardFile(view, i, field) for i in range(len(view))]


def shard_table(view: ShardView) -> ManifestTable:
    """The rows of shards of ``mmformer prepare manifest`` as a manifest table: every field as the manifest
    held it, a :class:`ShardFile` in place of each image/audio path, and the rows' manifest lines."""
    import json

    from mmformer.data.readers.manifest import ManifestTable
    from mmformer.data.shards.sources import LINE

    files = {n for n, kind in view.info.fields.items() if kind == "encoded"}
    small = [n for n, kind in view.info.fields.items() if kind == "json"]
    cols = read_columns(view, [*small, LINE])
    rows: list[dict[str, Any]] = []
    for i in range(len(view)):
        row = {n: json.loads(cols[n][i]) for n in small}
        rows.append({**row, **{n: ShardFile(view, i, n) for n in files}})
    return ManifestTable(Path(view.uri), rows, [int(x) for x in cols[LINE]])

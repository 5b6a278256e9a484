"""Streaming shards on disk: litdata chunks plus what mmformer needs to trust them.

A prepared split is a litdata dataset (``index.json`` + ``chunk-*.bin``), written by litdata's
``BinaryWriter``; ``index.json`` also carries an ``"mmformer"`` entry (:class:`ShardInfo`) saying
which source kind and fields the samples hold, how many there are and where they came from. Readers
check it before training, so a shard of another dataset, a missing or truncated chunk, or a URI that
cannot be read is an error naming it, not a crash mid-epoch.

Why litdata rather than WebDataset tar shards: it is Lightning's own streaming format, reads a local
folder or object storage (``s3://``, ``gs://``, ``az://``) through one ``StreamingDataset``, knows
each sample's chunk (which our chunk-aware, DDP-sharded, exactly resumable samplers need), and gives
random access by index; WebDataset tars are sequential-only, so exact mid-epoch resume would mean
re-reading every tar up to the resume point.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable

FORMAT_VERSION = 1
INDEX = "index.json"
COLUMNS = "columns.json"  # the small fields of every sample, column-wise (see ShardInfo.columns)
SMALL = ("str", "int", "float", "json")  # storage kinds kept in COLUMNS too
PARTIAL_SUFFIX = ".partial"


class ShardError(ValueError):
    """Shards that cannot be used: missing, truncated, of another dataset, or unreadable."""


@dataclass
class ShardInfo:
    """What a shard folder holds (stored in ``index.json`` under ``"mmformer"``).

    Attributes:
        kind: source kind (``image_classification``, ``manifest``, ``speech``, ``text_pairs``,
            ``trajectories``): a reader of another kind refuses the shards.
        fields: sample field → how it is stored (``encoded`` file bytes, ``array``, ``int``, ``str``,
            ``float``): a reader needing a field the shards lack refuses them.
        count: samples written.
        source: the source it was prepared from (a path) and its fingerprint (sizes, mtimes).
        meta: kind-specific data every reader needs (class names of a classification split, ...).
        columns: the small fields (texts, durations, labels, row names) also written column-wise to
            ``columns.json``, so a DataModule reads them in ``setup`` (vocabulary, length bucketing) without
            fetching the chunks' images or audio.
    """

    kind: str
    fields: dict[str, str]
    count: int = 0
    source: dict[str, Any] = field(default_factory=dict)
    meta: dict[str, Any] = field(default_factory=dict)
    version: int = FORMAT_VERSION
    columns: list[str] = field(default_factory=list)


def is_remote(uri: str) -> bool:
    """An object-storage URI (``s3://``, ``gs://``, ...), not a local folder."""
    return "://" in uri and not uri.startswith("file://")


def finished(out: str | Path, source: dict[str, Any] | None = None) -> ShardInfo | None:
    """The :class:`ShardInfo` of a complete shard folder at ``out`` (prepared from ``source`` when given), else None."""
    index = Path(out) / INDEX
    if not index.is_file():
        return None
    try:
        info = json.loads(index.read_text()).get("mmformer")
    except (OSError, json.JSONDecodeError):
        return None
    if not info or (source is not None and info.get("source") != source):
        return None
    return ShardInfo(**info)


def write_shards(out: str | Path, samples: Iterable[dict[str, Any]], info: ShardInfo, total: int | None = None,
                 chunk_bytes: str = "64MB", progress: Callable[[Iterable, int | None, str], Iterable] | None = None) -> ShardInfo:
    """Writes ``samples`` as litdata chunks into ``out``, all or nothing.

    Chunks go to ``out.partial`` first, renamed to ``out`` once ``index.json`` is complete: an interrupted
    run leaves only the partial folder, which the next run deletes and redoes, and a finished ``out`` is
    never half-written. A folder already finished from the same source is left as it is (a no-op).

    Args:
        out: the shard folder of one split.
        samples: dicts of the fields ``info.fields`` names.
        info: what the shards hold (``count`` is filled in).
        total: number of samples, for the progress bar.
        chunk_bytes: target chunk size (litdata's ``chunk_bytes``).
        progress: wraps the iterable to show progress (``(iterable, total, description)``).
    """
    from litdata.streaming.writer import BinaryWriter

    out = Path(out)
    done = finished(out, info.source)
    if done is not None:
        return done
    if out.exists():
        raise ShardError(f"{out} exists but is not finished shards of {info.source.get('path')}: "
                         f"remove it or choose another output folder")
    tmp = out.with_name(out.name + PARTIAL_SUFFIX)
    shutil.rmtree(tmp, ignore_errors=True)  # an interrupted run's leftovers
    tmp.mkdir(parents=True)
    writer = BinaryWriter(str(tmp), chunk_bytes=chunk_bytes)
    it = progress(samples, total, f"{out}") if progress is not None else samples
    n = 0
    columns: dict[str, list[Any]] = {k: [] for k, kind in info.fields.items() if kind in SMALL}
    for n, sample in enumerate(it, 1):
        missing = set(info.fields) - set(sample)
        if missing:
            raise ShardError(f"sample {n - 1} of {info.source.get('path')} lacks fields {sorted(missing)}")
        writer[n - 1] = {k: sample[k] for k in info.fields}
        for k, values in columns.items():
            values.append(sample[k])
    if n == 0:
        shutil.rmtree(tmp, ignore_errors=True)
        raise ShardError(f"{info.source.get('path')}: no samples to write")
    writer.done()
    writer.merge()
    (tmp / COLUMNS).write_text(json.dumps(columns))
    index = tmp / INDEX
    data = json.loads(index.read_text())
    info.count, info.columns = n, sorted(columns)
    data["mmformer"] = asdict(info)
    index.write_text(json.dumps(data, sort_keys=True))
    os.replace(tmp, out)
    return info


def check_local(folder: Path, data: dict[str, Any]) -> None:
    """Every chunk ``index.json`` lists exists with the size it recorded (names the first that does not),
    and so does ``columns.json`` when the index says there is one."""
    if (data.get("mmformer") or {}).get("columns") and not (folder / COLUMNS).is_file():
        raise ShardError(f"{folder / COLUMNS} is missing (listed in {folder / INDEX}); re-run `mmformer prepare` "
                         f"into a fresh folder or restore the file")
    for chunk in data.get("chunks", []):
        path = folder / chunk["filename"]
        if not path.is_file():
            raise ShardError(f"shard chunk {path} is missing (listed in {folder / INDEX}); "
                             f"re-run `mmformer prepare` into a fresh folder or restore the file")
        size, want = path.stat().st_size, chunk.get("chunk_bytes")
        if want is not None and size < want:
            raise ShardError(f"shard chunk {path} is truncated ({size} of {want} bytes); "
                             f"re-run `mmformer prepare` into a fresh folder or restore the file")


def fetch(uri: str, name: str, cache_dir: str | None = None) -> Path:
    """The local path of file ``name`` of a shard folder or URI (downloaded into the cache when remote)."""
    if not is_remote(uri):
        return Path(uri.removeprefix("file://")) / name
    from litdata.streaming.downloader import get_downloader

    target = Path(cache_dir or Path.home() / ".cache" / "mmformer-shards") / uri.replace("://", "/")
    target.mkdir(parents=True, exist_ok=True)
    get_downloader(uri, str(target), []).download_file(f"{uri.rstrip('/')}/{name}", str(target / name))
    return target / name


def read_columns_file(uri: str, cache_dir: str | None = None) -> dict[str, list[Any]]:
    """``columns.json`` of a shard folder or URI: field → the value of every sample."""
    try:
        return json.loads(fetch(uri, COLUMNS, cache_dir).read_text())
    except Exception as e:  # noqa: BLE001 - a missing, truncated or unreachable file: say which
        raise ShardError(f"cannot read {uri.rstrip('/')}/{COLUMNS}: {type(e).__name__}: {e}; prepare the shards "
                         f"again") from e


def read_index(uri: str, cache_dir: str | None = None) -> tuple[dict[str, Any], str]:
    """``(index.json contents, local folder holding it)`` of a shard folder or URI; checks a local folder's chunks.

    Raises:
        ShardError: no index (not prepared, or prepared by something else), or the URI cannot be read.
    """
    if not is_remote(uri):
        folder = Path(uri.removeprefix("file://"))
        index = folder / INDEX
        if not index.is_file():
            hint = " (an interrupted `mmformer prepare`: run it again)" if folder.with_name(
                folder.name + PARTIAL_SUFFIX).exists() else ""
            raise ShardError(f"no shards at {folder}: {index} does not exist{hint}; create them with `mmformer prepare`")
        try:
            data = json.loads(index.read_text())
        except (OSError, json.JSONDecodeError) as e:
            raise ShardError(f"{index} is not a readable shard index ({e})") from e
        check_local(folder, data)
        return data, str(folder)
    try:
        index = fetch(uri, INDEX, cache_dir)
        return json.loads(index.read_text()), str(index.parent)
    except Exception as e:  # noqa: BLE001 - any failure of the storage client: say which URI
        raise ShardError(f"cannot read shards at {uri}: {type(e).__name__}: {e}") from e


def expect(uri: str, data: dict[str, Any], kind: str, fields: Iterable[str] = ()) -> ShardInfo:
    """The shards' :class:`ShardInfo`, checked to be of ``kind`` and to hold ``fields``."""
    raw = data.get("mmformer")
    if not raw:
        raise ShardError(f"{uri} holds litdata chunks not written by `mmformer prepare` (no 'mmformer' entry in "
                         f"{INDEX}); prepare them with `mmformer prepare`")
    info = ShardInfo(**raw)
    if info.kind != kind:
        raise ShardError(f"{uri} holds shards of a {info.kind} dataset ({info.source.get('path')}), "
                         f"not {kind}: point to shards prepared from a {kind} source")
    missing = [f for f in fields if f not in info.fields]
    if missing:
        raise ShardError(f"{uri} lacks fields {missing} (it holds {sorted(info.fields)}, prepared from "
                         f"{info.source.get('path')})")
    return info

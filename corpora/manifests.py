"""What the manifest builders share: a settings-hashed cache folder, built once and atomically, that
holds one JSONL manifest per split (rows of named fields, file paths relative to the manifest).

A builder describes its dataset by a dict of settings; :func:`cache_folder` names the folder after
their hash, and :func:`build_once` fills it through a temporary sibling folder that is renamed into
place when complete, so an interrupted build never leaves a half dataset that looks finished, and
a second call returns the manifests at once.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys
import time
from pathlib import Path
from typing import Callable, Iterable

DONE = "meta.json"  # written last: its presence marks a complete build


def cache_folder(data_dir: str | Path, name: str, settings: dict) -> Path:
    """``<data_dir>/<name>_<12 hex digits of the settings' hash>``."""
    key = json.dumps(settings, sort_keys=True, default=str)
    return Path(data_dir) / f"{name}_{hashlib.sha256(key.encode()).hexdigest()[:12]}"


def write_jsonl(path: Path, rows: Iterable[dict]) -> int:
    """Writes one JSON object per line; returns the row count."""
    n = 0
    with open(path, "w", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
            n += 1
    return n


def read_jsonl(path: Path) -> list[dict]:
    """The rows of a JSONL manifest."""
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def relative_to(path: Path, folder: Path) -> str:
    """``path`` as seen from ``folder`` (``../x/y.wav`` for a sibling folder's file), POSIX separators."""
    return Path(os.path.relpath(Path(path).resolve(), Path(folder).resolve())).as_posix()


def build_once(
    folder: Path, splits: Iterable[str], make: Callable[[Path, Path], dict], settings: dict,
) -> dict[str, Path]:
    """Returns ``{split: <folder>/<split>.jsonl}``, calling ``make`` first unless the folder is complete.

    Args:
        folder: the cache folder (from :func:`cache_folder`).
        splits: the manifests ``make`` writes (``<split>.jsonl`` each).
        make: ``make(tmp, folder) -> stats`` writes the manifests and their files into ``tmp``;
            paths inside manifests are relative, so they stay valid after ``tmp`` becomes ``folder``
            (files outside the cache are referred to as seen from ``folder``, which is ``tmp``'s sibling).
        settings: recorded in ``meta.json`` beside the stats and the build time.
    """
    splits = list(splits)
    manifests = {split: folder / f"{split}.jsonl" for split in splits}
    if (folder / DONE).is_file():
        return manifests
    t0 = time.perf_counter()
    tmp = folder.with_name(f"{folder.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        stats = make(tmp, folder)
    except BaseException:  # interrupted or failed: leave nothing behind
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    missing = [s for s in splits if not (tmp / f"{s}.jsonl").is_file()]
    if missing:
        raise RuntimeError(f"builder of {folder.name} wrote no manifest for {missing}")
    meta = {"settings": settings, "stats": stats, "build_seconds": round(time.perf_counter() - t0, 1)}
    (tmp / DONE).write_text(json.dumps(meta, indent=1, default=str))
    try:
        tmp.rename(folder)  # atomic: an interrupted build leaves only a .tmp folder
    except OSError:  # another process finished the same build first (or a stale half folder is in the way)
        if (folder / DONE).is_file():
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            shutil.rmtree(folder, ignore_errors=True)
            tmp.rename(folder)
    counts = {split: {k: v for k, v in value.items() if isinstance(v, (int, float))}  # no long lists
              if isinstance(value, dict) else value for split, value in stats.items()}
    print(f"{folder.name} ready in {meta['build_seconds']} s: {counts}", file=sys.stderr, flush=True)
    return manifests

"""What ``mmformer prepare`` reads: each supported source as splits of samples to write as shards.

Samples keep the source's *encoded* bytes (PNG/JPEG/FLAC/WAV files as they are) or raw arrays plus
small fields, so shards are about the size of the source and decoding stays in the DataLoader's
workers, as with files. Every source yields :class:`Split` objects: a name, a :class:`ShardInfo`
(kind, fields, class names...) and a sample iterator with its length for the progress bar.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np

from mmformer.data.shards.format import ShardError, ShardInfo

LINE = "manifest.line"  # the manifest line of a row, beside its fields
MEDIA_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm",
                  ".wav", ".flac", ".mp3", ".ogg", ".opus")


@dataclass
class Split:
    """One split of a source: ``out/<name>`` gets its shards.

    Attributes:
        name: the split folder's name (``train``, ``test``, or ``all`` for single-file sources).
        info: kind and fields of its samples (``source`` is filled in by ``prepare``).
        count: number of samples (for the progress bar).
        samples: makes the sample iterator (called once, when the split is written).
    """

    name: str
    info: ShardInfo
    count: int
    samples: Callable[[], Iterator[dict[str, Any]]]


def fingerprint(path: Path) -> dict[str, Any]:
    """The source a prepared split came from: its path, and the size and mtime of the file (or of the
    folder's files), so a changed source is prepared again instead of being reported as done."""
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    return {"path": str(path.resolve()), "files": len(files), "bytes": sum(p.stat().st_size for p in files),
            "mtime": max((p.stat().st_mtime_ns for p in files), default=0)}


def image_folder(root: Path, decode: bool = False) -> list[Split]:
    """An ImageFolder tree ``root/{train,test}/<class>/*.png``: the image files' bytes and their labels, or
    with ``decode`` their pixels (uint8 ``(C, H, W)`` arrays, see :func:`file_pixels`).

    Decoding once here suits small images: a 32x32 PNG's pixels take about as many bytes as the file, and
    the DataLoader workers then skip the per-sample decode (on few cores, CPU taken from training). For
    photos keep the files: decoded, a JPEG takes ~5-10x its size on disk.
    """
    from mmformer.data.readers.image_files import file_pixels, folder_classes, image_folder_files

    classes = folder_classes(root / "train")
    splits = []
    for name in ("train", "test"):
        if not (root / name).is_dir():
            continue
        try:
            files = image_folder_files(root / name, classes)
        except ValueError as e:  # a class folder train/ lacks
            raise ShardError(str(e)) from None
        meta = {"classes": classes, "num_classes": len(classes), **({"pixels": "file"} if decode else {})}
        info = ShardInfo("image_classification", {"image": "array" if decode else "encoded", "label": "int"}, meta=meta)
        image = (lambda p: file_pixels(p.read_bytes(), str(p))) if decode else (lambda p: p.read_bytes())
        splits.append(Split(name, info, len(files),
                            lambda files=files: ({"image": image(p), "label": y} for p, y in files)))
    return splits


def idx_files(root: Path) -> list[Split]:
    """MNIST-style IDX files: each image as a raw ``(1, H, W)`` uint8 array, and its label."""
    from mmformer.data.readers.idx import find_idx, read_idx

    splits = []
    for name, prefix in (("train", "train"), ("test", "t10k")):
        images = read_idx(find_idx(root, f"{prefix}-images-idx3-ubyte")).numpy()
        labels = read_idx(find_idx(root, f"{prefix}-labels-idx1-ubyte")).numpy()
        if len(images) != len(labels):
            raise ShardError(f"{root}: {len(images)} {name} images but {len(labels)} labels")
        info = ShardInfo("image_classification", {"image": "array", "label": "int"},
                         meta={"classes": None, "num_classes": int(labels.max()) + 1})
        splits.append(Split(name, info, len(images), lambda x=images, y=labels: (
            {"image": np.ascontiguousarray(x[i][None]), "label": int(y[i])} for i in range(len(x)))))
    return splits


def nemo_manifest(path: Path) -> list[Split]:
    """A NeMo JSONL manifest: each clip's file bytes, duration and transcript, and its ``manifest:line`` id."""
    from mmformer.data.readers.audio import read_manifest

    rows = read_manifest(path, require_text=False)
    info = ShardInfo("speech", {"audio": "encoded", "suffix": "str", "duration": "float", "text": "str", "id": "str"})
    return [Split("all", info, len(rows), lambda: (
        {"audio": Path(r.audio_filepath).read_bytes(), "suffix": Path(r.audio_filepath).suffix,
         "duration": float(r.duration), "text": r.text, "id": f"{r.manifest}:{r.line}"} for r in rows))]


def text_pairs(path: Path) -> list[Split]:
    """TSV ``src<TAB>tgt`` or JSONL ``{"src", "tgt"}`` pairs, with their 1-based rows in the file."""
    from mmformer.data.readers.text_pairs import read_pairs

    pairs = read_pairs(str(path))
    info = ShardInfo("text_pairs", {"src": "str", "tgt": "str", "row": "int"})
    return [Split("all", info, len(pairs), lambda: (
        {"src": s, "tgt": t, "row": r} for s, t, r in zip(pairs.sources, pairs.targets, pairs.rows)))]


def d4rl(path: Path) -> list[Split]:
    """A D4RL ``.npz``/HDF5 file: one sample per episode (its observations, actions, rewards); the file's
    reference scores go to the index."""
    from mmformer.data.readers.d4rl import episodes_from_arrays, read_d4rl

    eps = episodes_from_arrays(read_d4rl(path), str(path))
    bounds = list(zip(eps.starts.tolist(), eps.ends.tolist()))
    info = ShardInfo("trajectories", {"observations": "array", "actions": "array", "rewards": "array"},
                     meta={"ref_min_score": eps.ref_min_score, "ref_max_score": eps.ref_max_score})
    return [Split("all", info, len(bounds), lambda: (
        {"observations": eps.observations[a:b].numpy(), "actions": eps.actions[a:b].numpy(),
         "rewards": eps.rewards[a:b].numpy()} for a, b in bounds))]


def manifest(path: Path) -> list[Split]:
    """A multimodal manifest (JSONL/CSV/TSV): a field naming an existing image/audio file is stored as its
    bytes (its name in ``<field>.suffix``), every other field as its value, as JSON text; ``manifest.line`` is
    the row's line in the manifest (named in errors)."""
    import json

    from mmformer.data.readers.manifest import read_table

    table = read_table(path)
    names = list(dict.fromkeys(k for row in table.rows for k in row))

    def media(value: Any) -> Path | None:
        if isinstance(value, str) and value.lower().endswith(MEDIA_SUFFIXES):
            p = Path(value) if Path(value).is_absolute() else path.parent / value
            return p if p.is_file() else None
        return None

    files = {n for n in names if any(media(row.get(n)) is not None for row in table.rows[:100])}
    fields = {n: ("encoded" if n in files else "json") for n in names}
    fields.update({f"{n}.suffix": "str" for n in files})
    fields[LINE] = "int"

    def rows() -> Iterator[dict[str, Any]]:
        for i, row in enumerate(table.rows):
            sample: dict[str, Any] = {LINE: table.lines[i]}
            for n in names:
                if n in files:
                    p = media(row.get(n))
                    if p is None:
                        raise ShardError(f"{table.where(i, n)}: {row.get(n)!r} is not an existing media file")
                    sample[n], sample[f"{n}.suffix"] = p.read_bytes(), p.suffix
                else:
                    sample[n] = json.dumps(row.get(n))
            yield sample
    return [Split("all", ShardInfo("manifest", fields), len(table), rows)]


SOURCES: dict[str, Callable[[Path], list[Split]]] = {
    "imagefolder": image_folder, "idx": idx_files, "nemo": nemo_manifest, "pairs": text_pairs,
    "d4rl": d4rl, "manifest": manifest,
}

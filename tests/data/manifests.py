"""Tiny generated manifests for the ManifestData tests (and any test that trains from YAML over one):
solid-colour PNGs, sine-tone WAVs and rows of every field type, written under a test's ``tmp_path``."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from mmformer.data.readers.audio import write_wav

COLORS = {"red": (255, 0, 0), "green": (0, 255, 0), "blue": (0, 0, 255)}
WORDS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten"]


def png(path: Path, rgb: tuple[int, int, int], size: int = 16) -> str:
    """A solid-colour ``size``×``size`` PNG."""
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (size, size), rgb).save(path)
    return str(path)


def tone(path: Path, freq: float, seconds: float, rate: int = 16000) -> str:
    """A 16-bit mono sine WAV of ``round(seconds * rate)`` samples."""
    path.parent.mkdir(parents=True, exist_ok=True)
    t = np.arange(round(seconds * rate)) / rate
    write_wav(path, 0.5 * np.sin(2 * math.pi * freq * t), rate)
    return str(path)


def sample_rows(folder: Path, n: int, seed: int = 0, rate: int = 16000) -> list[dict[str, Any]]:
    """``n`` rows with one field of every type: ``image`` (relative PNG path), ``audio`` (relative WAV path,
    0.05–0.3 s), ``text`` (1–6 number words), ``caption``, ``label`` (colour name), ``score`` (number),
    ``emb`` (4-vector). Files land in ``folder/media``."""
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        color = list(COLORS)[i % len(COLORS)]
        words = rng.choice(WORDS, size=int(rng.integers(1, 7))).tolist()
        rows.append({
            "image": str(Path(png(folder / "media" / f"{seed}_{i}.png", COLORS[color])).relative_to(folder)),
            "audio": str(Path(tone(folder / "media" / f"{seed}_{i}.wav", 200 + 50 * i % 700,
                                   float(rng.uniform(0.05, 0.3)), rate)).relative_to(folder)),
            "text": " ".join(words),
            "caption": f"a {color} square",
            "label": color,
            "score": float(i) / 2,
            "emb": [float(i), 1.0, -1.0, 0.5],
        })
    return rows


def write_manifest(path: Path, rows: Sequence[dict[str, Any]], fields: Sequence[str] | None = None) -> str:
    """Writes ``rows`` as JSONL, CSV or TSV by ``path``'s suffix (vectors become JSON lists in CSV cells)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".jsonl":
        path.write_text("".join(json.dumps(r) + "\n" for r in rows))
        return str(path)
    names = list(fields or rows[0])
    with open(path, "w", newline="") as f:
        writer = csv.writer(f, delimiter="," if path.suffix == ".csv" else "\t")
        writer.writerow(names)
        for r in rows:
            writer.writerow([json.dumps(r[k]) if isinstance(r.get(k), list) else r.get(k, "") for k in names])
    return str(path)


ALL_FIELDS: dict[str, dict[str, Any]] = {
    "image": {"type": "image", "size": 8},
    "audio": {"type": "audio", "sample_rate": 16000},
    "text": {"type": "text", "max_len": 16},
    "caption": {"type": "text"},
    "label": {"type": "label"},
    "score": {"type": "number"},
    "emb": {"type": "vector", "dim": 4},
}

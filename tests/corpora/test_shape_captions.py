"""The captioning set of rendered shapes: PNG + canonical caption rows, unique eval captions, cached."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from corpora import shape_captions
from corpora.manifests import read_jsonl
from corpora.shape_captions import ShapeCaptionsConfig, build
from corpora.shapes import COLOR_NAMES, POSITIONS, SHAPES, SIZES

TINY = ShapeCaptionsConfig(num_train=40, num_eval=20)


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return build(tmp_path_factory.mktemp("shapes"), TINY)


def _canonical(caption: str) -> bool:
    """Every object names its size, colour, shape and position, in that order."""
    for phrase in caption.split(" and "):
        words = phrase.split(" ", 4)
        where = phrase.split(" ", 4)[4] if len(words) == 5 else ""
        if not (words[0] == "a" and words[1] in SIZES and words[2] in COLOR_NAMES and words[3] in SHAPES
                and where in ("in the center", *(f"at the {p}" for p in POSITIONS if p != "center"))):
            return False
    return True


def test_rows_are_pngs_with_canonical_captions(built: dict[str, Path]) -> None:
    assert set(built) == {"train", "val", "test"}
    for split, path in built.items():
        rows = read_jsonl(path)
        assert len(rows) == (40 if split == "train" else 20)
        for row in rows:
            image = np.asarray(Image.open(path.parent / row["image"]))
            assert image.shape == (48, 48, 3) and image.dtype == np.uint8 and image.std() > 5  # shapes drawn
            assert _canonical(row["caption"]), row["caption"]
        if split != "train":
            assert len({r["caption"] for r in rows}) == len(rows)  # one right caption per test image


def test_a_second_build_reuses_the_pngs(built: dict[str, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    png = built["test"].parent / read_jsonl(built["test"])[0]["image"]
    stamp = png.stat().st_mtime_ns
    monkeypatch.setattr(shape_captions, "build_split", lambda *a, **k: pytest.fail("rebuilt"))
    assert build(built["test"].parent.parent, TINY) == built
    assert png.stat().st_mtime_ns == stamp

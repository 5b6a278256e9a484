"""The glyph-caption second corpus: deterministic, split sizes, small glyphs, captions that match the labels,
unique eval captions, cached."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from corpora import glyph_captions as gc
from corpora.manifests import read_jsonl

TINY = gc.GlyphCaptionsConfig(num_train=40, num_eval=20)


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return gc.build(tmp_path_factory.mktemp("glyphs"), TINY)


def test_split_sizes_and_rows(built: dict[str, Path]) -> None:
    assert set(built) == {"train", "val", "test"}
    for split, path in built.items():
        rows = read_jsonl(path)
        assert len(rows) == (40 if split == "train" else 20)
        for row in rows:
            image = np.asarray(Image.open(path.parent / row["image"]))
            assert image.shape == (48, 48, 3) and image.dtype == np.uint8
            assert row["glyph"] in gc.GLYPHS and row["color"] != row["background"]
            assert {row["color"], row["background"]} <= set(gc.COLOR_NAMES)
        if split != "train":
            assert len({r["caption"] for r in rows}) == len(rows)  # one right caption per retrieval query


def test_captions_name_the_labels(built: dict[str, Path]) -> None:
    for split, path in built.items():
        for row in read_jsonl(path):
            words = row["caption"].replace(",", "").split()
            assert row["glyph"] in words and row["color"] in words and row["background"] in words, row
            assert sum(w in gc.GLYPHS for w in words) == 1  # no other digit to confuse the label
            if split != "train":  # full captions: size and position too
                assert row["size"] in words and row["position"] in row["caption"], row


def test_the_glyph_is_a_small_part_of_the_image() -> None:
    rng = np.random.default_rng(0)
    for _ in range(30):
        image, attrs, (x0, y0, x1, y1) = gc.render(rng, TINY)
        assert 0 <= x0 < x1 <= 48 and 0 <= y0 < y1 <= 48
        assert TINY.min_height - 1 <= y1 - y0 <= TINY.max_height + 1
        assert (x1 - x0) * (y1 - y0) <= 0.2 * 48 * 48  # the ink box covers at most a fifth of the image
        # outside the box it is background: its mean colour is the background's, not the glyph's
        mask = np.ones((48, 48), bool)
        mask[y0:y1, x0:x1] = False
        outside = image[mask].astype(float).mean(0)
        names = np.array(list(gc.COLORS.values()), float)
        assert gc.COLOR_NAMES[int(np.linalg.norm(names - outside, axis=1).argmin())] == attrs["background"]
        assert np.abs(image[y0:y1, x0:x1].astype(float) - outside).max() > 80  # ink drawn in the box


def test_deterministic_and_seeded() -> None:
    small = gc.GlyphCaptionsConfig(num_train=5, num_eval=5)
    a, ra = gc.build_split(small, "val")
    b, rb = gc.build_split(small, "val")
    assert ra == rb and all(np.array_equal(x, y) for x, y in zip(a, b))
    c, rc = gc.build_split(gc.GlyphCaptionsConfig(num_train=5, num_eval=5, seed=1), "val")
    assert rc != ra
    assert gc.build_split(small, "test")[1] != ra  # splits draw differently


def test_a_second_build_reuses_the_pngs(built: dict[str, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    png = built["test"].parent / read_jsonl(built["test"])[0]["image"]
    stamp = png.stat().st_mtime_ns
    monkeypatch.setattr(gc, "build_split", lambda *a, **k: pytest.fail("rebuilt"))
    assert gc.build(built["test"].parent.parent, TINY) == built
    assert png.stat().st_mtime_ns == stamp

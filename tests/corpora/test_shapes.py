"""Rendered shape scenes: captions describe what is drawn, splits keep their promises, the cache is reused."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest

from corpora.shapes import (
    COLOR_NAMES, COLORS, SHAPES, UNSEEN_COMBOS, ShapesConfig, ShapesCorpus, build_split, cache_dir, caption,
    ensure_rendered,
    load_split, render,
)

SMALL = ShapesConfig(num_train=400, num_eval=120)


def test_full_captions_are_compositional() -> None:
    objects = [(0, 0, 0, 0), (1, 4, 1, 4)]  # small red circle top left, large blue square center
    assert caption(objects) == "a small red circle at the top left and a large blue square in the center"


def test_partial_captions_only_drop_attributes() -> None:
    rng = np.random.default_rng(0)
    full = caption([(2, 3, 1, 8)])
    for _ in range(50):
        words = caption([(2, 3, 1, 8)], rng).split()
        assert set(words) <= set(full.split()) | {"shape"} and words[0] == "a"


def test_render_draws_the_named_colour_where_the_caption_says() -> None:
    # a large blue square at the bottom right
    img = render([(1, COLOR_NAMES.index("blue"), 1, 8)], 48, np.random.default_rng(0))
    assert img.shape == (48, 48, 3) and img.dtype == np.uint8
    blue = np.abs(img.astype(int) - COLORS["blue"]).sum(-1) < 80  # (H, W) pixels near blue
    ys, xs = blue.nonzero()
    assert len(ys) > 50 and ys.min() >= 32 and xs.min() >= 32  # only in the bottom-right cell


def test_splits_keep_their_promises() -> None:
    held = {(SHAPES.index(s), COLOR_NAMES.index(c)) for s, c in UNSEEN_COMBOS}
    _, train_caps, _ = build_split(SMALL, "train")
    for cap in train_caps:
        for s, c in UNSEEN_COMBOS:
            assert f"{c} {s}" not in cap, cap  # held-out combinations never appear in training
    _, test_caps, test_labels = build_split(SMALL, "test")
    assert len(set(test_caps)) == len(test_caps)  # one right answer per retrieval query
    assert (test_labels[:, 0] == -1).any() and (test_labels[:, 0] >= 0).any()  # two- and one-shape scenes
    for split in ("zeroshot", "unseen"):
        _, caps, labels = build_split(SMALL, split)
        assert (labels >= 0).all() and " and " not in " ".join(caps)  # single shapes, labelled
        pairs = {(int(s), int(c)) for s, c in labels[:, :2]}
        assert (pairs <= held) == (split == "unseen") and not (split == "zeroshot" and pairs & held)
        for cap, (s, c, combo) in zip(caps, labels):
            assert f"{COLOR_NAMES[c]} {SHAPES[s]}" in cap and combo == s * len(COLORS) + c


def test_rendering_is_seeded_and_cached_by_settings(tmp_path: Path) -> None:
    folder = ensure_rendered(SMALL, tmp_path)
    first = load_split(folder, "test")
    again = build_split(SMALL, "test")
    assert np.array_equal(first[0], again[0]) and first[1] == again[1]
    stamp = (folder / "train" / "images.npy").stat().st_mtime_ns
    t = time.perf_counter()
    assert ensure_rendered(SMALL, tmp_path) == folder
    assert time.perf_counter() - t < 1.0 and (folder / "train" / "images.npy").stat().st_mtime_ns == stamp
    other = ShapesConfig(num_train=400, num_eval=120, seed=1)
    assert cache_dir(other, tmp_path) != folder


def test_bad_settings_are_clear_errors() -> None:
    with pytest.raises(ValueError, match="fractions"):
        ShapesCorpus(two_shape_fraction=1.5)
    with pytest.raises(ValueError, match="unknown shapes split"):
        build_split(SMALL, "nope")

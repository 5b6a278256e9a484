"""The printed-letters second corpus: deterministic, held-out test faces, an ImageFolder tree that
ImageFolderData reads with the right labels, bad settings rejected, cached."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from corpora import printed_letters as pl
from corpora.manifests import read_jsonl

TINY = pl.PrintedLettersConfig(train_per_class=3, test_per_class=2)


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return pl.build(tmp_path_factory.mktemp("letters"), TINY)


def test_tree_sizes_and_held_out_fonts(built: Path) -> None:
    for split, per_class in (("train", 3), ("test", 2)):
        rows = read_jsonl(built / f"{split}.jsonl")
        assert len(rows) == per_class * len(pl.CLASSES)
        for row in rows:
            path = built / row["image"]
            assert path.parent.name == row["label"] and path.parent.parent.name == split
            image = np.asarray(Image.open(path))
            assert image.shape == (28, 28) and image.dtype == np.uint8
            assert (row["font"] in pl.TEST_FONTS) == (split == "test")  # test faces never train
        assert sorted(p.name for p in (built / split).iterdir() if p.is_dir()) == sorted(pl.CLASSES)
    assert set(pl.split_fonts(TINY, "train")).isdisjoint(pl.split_fonts(TINY, "test"))
    assert len(pl.split_fonts(TINY, "train")) + len(pl.split_fonts(TINY, "test")) == len(pl.FONTS)


def test_image_folder_data_reads_it(built: Path) -> None:
    from mmformer.data import ImageFolderData

    dm = ImageFolderData(root=str(built), image_size=28, channels=1, batch_size=8, val_fraction=0.2, hflip=False)
    dm.setup("fit")
    assert dm.classes == sorted(pl.CLASSES) and dm.num_classes == 10
    assert len(dm.train_set) + len(dm.val_set) == 30 and len(dm.test_set) == 20
    batch = next(iter(dm.test_dataloader()))
    assert batch["input"].shape == (8, 1, 28, 28)
    rows = {r["image"]: r["label"] for r in read_jsonl(built / "test.jsonl")}
    files = sorted(rows, key=lambda name: (rows[name], name))  # the reader's order: class, then file name
    labels = [dm.classes[int(y)] for y in dm.test_set.labels]
    assert labels == [rows[f] for f in files]


def _shape(image: np.ndarray) -> np.ndarray:
    """The ink cropped to its box and resized to 16x16, zero-mean unit-norm (position, size and contrast removed)."""
    ink = image > (float(image.min()) + float(image.max())) / 2
    ys, xs = np.nonzero(ink)
    crop = Image.fromarray((ink[ys.min():ys.max() + 1, xs.min():xs.max() + 1] * 255).astype(np.uint8))
    x = np.asarray(crop.resize((16, 16), Image.Resampling.BILINEAR), dtype=float).ravel()
    x -= x.mean()
    return x / np.linalg.norm(x)


@pytest.mark.parametrize("font", ["DejaVuSerif", "cmr10", pl.PILLOW_FONT])
def test_labels_match_the_drawn_letter(font: str) -> None:
    """Renders match their own letter's clean reference better than the other letters' (nearest template on the
    ink's box, with mild rotation and noise): the image in ``<letter>/`` shows that letter."""
    cfg = pl.PrintedLettersConfig(max_rotation=3.0, noise=4.0, clutter=0.0)
    refs = np.stack([_shape(pl.render(None, c, font, cfg, augment=False)) for c in pl.CLASSES])
    assert (refs @ refs.T - 2 * np.eye(len(refs))).max() < 0.95  # no two letters render alike (no .notdef boxes)
    rng = np.random.default_rng(0)
    hits = [int(np.argmax(refs @ _shape(pl.render(rng, c, font, cfg)))) == k
            for _ in range(3) for k, c in enumerate(pl.CLASSES)]
    assert np.mean(hits) >= 0.8, hits


def test_deterministic_and_seeded() -> None:
    a, ra = pl.build_split(TINY, "test")
    b, rb = pl.build_split(TINY, "test")
    assert ra == rb and all(np.array_equal(x, y) for x, y in zip(a, b))
    c, _ = pl.build_split(pl.PrintedLettersConfig(train_per_class=3, test_per_class=2, seed=1), "test")
    assert not all(np.array_equal(x, y) for x, y in zip(a, c))
    assert [r["label"] for r in ra] == list(pl.CLASSES) * 2  # classes balanced and interleaved


def test_bad_settings_are_errors(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="not among the known fonts"):
        pl.build(tmp_path, pl.PrintedLettersConfig(test_fonts=("Comic Sans",)))
    with pytest.raises(ValueError, match="some but not all"):
        pl.build(tmp_path, pl.PrintedLettersConfig(test_fonts=()))
    with pytest.raises(ValueError, match="some but not all"):
        pl.split_fonts(pl.PrintedLettersConfig(test_fonts=pl.FONTS), "train")
    with pytest.raises(ValueError, match="unknown font"):
        pl.check_font("Helvetica")
    assert not list(tmp_path.iterdir())  # nothing half-built left behind


def test_a_second_build_reuses_the_pngs(built: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    png = built / read_jsonl(built / "test.jsonl")[0]["image"]
    stamp = png.stat().st_mtime_ns
    monkeypatch.setattr(pl, "build_split", lambda *a, **k: pytest.fail("rebuilt"))
    assert pl.build(built.parent, TINY) == built
    assert png.stat().st_mtime_ns == stamp

"""Caption DataModules: OpenCLIP-style CSV/TSV tables (a ManifestData configuration) and the shapes scenes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from corpora.shapes import ShapesCorpus
from mmformer.data.modules.captions import CsvCaptionData, ShapesCaptionData
from mmformer.data.readers.manifest import ManifestError

CAPTIONS = ["a red square", "a blue square", "a green circle", "a red circle", "a blue circle", "a green square"]


def _table(tmp_path: Path, rows: list[tuple[str, str]], sep: str = "\t", name: str = "train.tsv",
           header: tuple[str, str] = ("filepath", "title")) -> Path:
    path = tmp_path / name
    path.write_text("\n".join(sep.join(r) for r in [header, *rows]) + "\n")
    return path


def _images(tmp_path: Path, n: int) -> list[str]:
    names = []
    for i in range(n):
        arr = np.full((20, 20, 3), 40 * i, np.uint8)
        Image.fromarray(arr).save(tmp_path / f"img{i}.png")
        names.append(f"img{i}.png")
    return names


def test_datamodule_batches_images_with_their_captions(tmp_path: Path) -> None:
    names = _images(tmp_path, 6)
    train = _table(tmp_path, list(zip(names, CAPTIONS)))
    dm = CsvCaptionData(str(train), str(train), data_dir=str(tmp_path / "cache"), image_size=16, batch_size=4,
                        vocab_size=24)
    dm.prepare_data()
    dm.setup("fit")
    batch = next(iter(dm.train_dataloader()))
    assert batch["a"].shape == (4, 3, 16, 16) and batch["b"].shape[0] == 4
    for i, row in enumerate(batch["index"].tolist()):
        assert dm.vocab.decode(batch["b"][i : i + 1])[0] == CAPTIONS[row]
        level = batch["a"][i].mean() * 0.5 + 0.5  # undo the default (0.5, 0.5) normalization
        assert level.item() == pytest.approx(40 * row / 255, abs=0.02)


def test_a_csv_table_with_other_columns_reads_alike(tmp_path: Path) -> None:
    names = _images(tmp_path, 6)
    csv_path = _table(tmp_path, [(c, n) for n, c in zip(names, CAPTIONS)], sep=",", name="t.csv",
                      header=("caption", "image"))
    dm = CsvCaptionData(str(csv_path), str(csv_path), image_column="image", caption_column="caption",
                        data_dir=str(tmp_path / "cache"), image_size=16, batch_size=3, vocab_size=24)
    dm.prepare_data()
    dm.setup("fit")
    batch = next(iter(dm.train_dataloader()))
    assert dm.vocab.decode(batch["b"][:1])[0] == CAPTIONS[int(batch["index"][0])]


def test_non_image_file_names_the_row_when_read(tmp_path: Path) -> None:
    names = _images(tmp_path, 5)
    (tmp_path / "notes.png").write_text("this is not an image")
    rows = list(zip(names, CAPTIONS)) + [("notes.png", "a note")]
    train = _table(tmp_path, rows)
    dm = CsvCaptionData(str(train), str(train), data_dir=str(tmp_path / "cache"), image_size=16, batch_size=6,
                        vocab_size=24)
    with pytest.raises(ManifestError, match=r"train\.tsv:7, field 'filepath': .*notes\.png is not a readable image"):
        dm.prepare_data()  # checked before any step runs


def test_shapes_datamodule_batches_and_vocab(tmp_path: Path) -> None:
    dm = ShapesCaptionData(ShapesCorpus(num_train=400, num_eval=120), data_dir=str(tmp_path), batch_size=16,
                           vocab_size=64)
    dm.prepare_data()
    dm.setup("fit")
    assert dm.vocab is not None and dm.vocab.vocab_size == 64
    batch = next(iter(dm.train_dataloader()))
    assert batch["a"].shape == (16, 3, 48, 48) and batch["b"].dtype.is_floating_point is False
    assert batch["a"].mean().abs() < 0.5  # normalized with the training statistics
    row = int(batch["index"][0])
    words = dm.vocab.decode(batch["b"][:1])[0]
    assert words == dm.load_raw("train")[1][row]  # captions stay paired with their images
    assert [s.name for s in dm.data_spec().eval_splits] == ["", "", "unseen_"]
    test = next(iter(dm.test_dataloader()))
    assert set(test) >= {"a", "b", "index", "labels", "split"}

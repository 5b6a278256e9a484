"""Image DataModules: IDX reading, splits, channel conversion, ImageFolder, prediction inputs, bad input."""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from mmformer.data import DigitsData, FashionMNISTData, IdxImageData, ImageFolderData, load_image
from mmformer.data.common.sampling import ResumableSampler
from mmformer.data.modules.images import check_labels, match_channels
from mmformer.data.readers.idx import read_idx


def write_idx(path: Path, array: np.ndarray, gz: bool = False) -> Path:
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(struct.pack(">I", d) for d in array.shape)
    data = header + array.astype(np.uint8).tobytes()
    (gzip.open if gz else open)(path, "wb").write(data)
    return path


@pytest.fixture
def idx_root(tmp_path: Path) -> Path:
    rng = np.random.default_rng(0)
    for prefix, n in (("train", 40), ("t10k", 10)):
        write_idx(tmp_path / f"{prefix}-images-idx3-ubyte.gz", rng.integers(0, 255, (n, 6, 6)), gz=True)
        write_idx(tmp_path / f"{prefix}-labels-idx1-ubyte", np.arange(n) % 3)
    return tmp_path


def test_read_idx_roundtrip_plain_and_gzip(tmp_path: Path) -> None:
    a = np.arange(24, dtype=np.uint8).reshape(2, 3, 4)
    for gz in (False, True):
        got = read_idx(write_idx(tmp_path / f"x{gz}.idx{'.gz' if gz else ''}", a, gz))
        assert torch.equal(got, torch.from_numpy(a))


def test_read_idx_errors_name_the_file(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="nope.idx"):
        read_idx(tmp_path / "nope.idx")
    bad = tmp_path / "bad.idx"
    bad.write_bytes(b"\x12\x34\x56\x78rest")
    with pytest.raises(ValueError, match="bad.idx.*magic"):
        read_idx(bad)
    good = write_idx(tmp_path / "t.idx", np.zeros((4, 5, 5)))
    good.write_bytes(good.read_bytes()[:-7])  # truncated
    with pytest.raises(ValueError, match="truncated"):
        read_idx(good)


def test_idx_datamodule_splits_val_from_train_never_test(idx_root: Path) -> None:
    dm = IdxImageData(str(idx_root), ["a", "b", "c"], image_size=6, val_fraction=0.25, batch_size=8)
    dm.setup("fit")
    assert (len(dm.train_set), len(dm.val_set), len(dm.test_set)) == (30, 10, 10)
    train_imgs = {tuple(x.flatten().tolist()) for x in dm.train_set.images}
    val_imgs = {tuple(x.flatten().tolist()) for x in dm.val_set.images}
    assert not train_imgs & val_imgs
    batch = next(iter(dm.train_dataloader()))
    x, y = batch["input"], batch["label"]
    assert x.shape == (8, 1, 6, 6) and x.dtype == torch.float32 and y.dtype == torch.long
    assert torch.equal(dm.train_set.labels[batch["index"]], y), "index names each sample's row"
    dm2 = IdxImageData(str(idx_root), ["a", "b", "c"], image_size=6, val_fraction=0.25)
    dm2.setup("fit")
    assert torch.equal(dm.val_set.images, dm2.val_set.images), "the split is seeded"


def test_missing_dataset_path_says_how_to_fix_it(tmp_path: Path) -> None:
    dm = FashionMNISTData(root=str(tmp_path / "absent"))
    with pytest.raises(FileNotFoundError, match="apt-get install dataset-fashion-mnist"):
        dm.setup("fit")


def test_label_out_of_range_is_named() -> None:
    with pytest.raises(ValueError, match="label 7 at index 2 is out of range for 5 classes"):
        check_labels(torch.tensor([0, 1, 7, 2]), 5, "toy")
    with pytest.raises(ValueError, match="label -1"):
        check_labels(torch.tensor([-1]), 5, "toy")


def test_channels_are_converted_as_documented() -> None:
    gray = torch.randint(0, 255, (2, 1, 4, 4), dtype=torch.uint8)
    rgb = match_channels(gray, 3)
    assert rgb.shape == (2, 3, 4, 4) and torch.equal(rgb[:, 0], rgb[:, 2])
    back = match_channels(rgb, 1)  # equal channels: luma is the value itself, up to uint8 rounding
    assert back.shape == gray.shape and (back.int() - gray.int()).abs().max() <= 1
    with pytest.raises(ValueError, match="4-channel"):
        match_channels(torch.zeros(1, 4, 2, 2, dtype=torch.uint8), 3)


def _image_folder(root: Path) -> Path:
    rng = np.random.default_rng(0)
    for split, n in (("train", 6), ("test", 2)):
        for cls, mode in (("cat", "RGB"), ("dog", "L")):
            (root / split / cls).mkdir(parents=True)
            for i in range(n):
                shape = (12, 10, 3) if mode == "RGB" else (9, 9)
                Image.fromarray(rng.integers(0, 255, shape, dtype=np.uint8), mode).save(root / split / cls / f"{i}.png")
    return root


def test_image_folder_mixed_modes_become_the_requested_channels(tmp_path: Path) -> None:
    dm = ImageFolderData(str(_image_folder(tmp_path)), image_size=8, channels=3, val_fraction=0.25, batch_size=4)
    dm.setup("fit")
    assert dm.classes == ["cat", "dog"] and len(dm.test_set) == 4
    batch = next(iter(dm.test_dataloader()))
    assert batch["input"].shape == (4, 3, 8, 8) and batch["index"].tolist() == [0, 1, 2, 3]


def test_corrupt_or_non_image_file_is_named(tmp_path: Path) -> None:
    root = _image_folder(tmp_path)
    (root / "train" / "cat" / "notes.png").write_text("this is not a png")
    with pytest.raises(ValueError, match="notes.png is not a readable image"):
        ImageFolderData(str(root), image_size=8).setup("fit")
    with pytest.raises(FileNotFoundError, match="missing.png"):
        load_image(root / "missing.png", 1, 8)


def test_image_folder_test_class_unknown_to_train_is_an_error(tmp_path: Path) -> None:
    root = _image_folder(tmp_path)
    (root / "test" / "bird").mkdir()
    with pytest.raises(ValueError, match="bird"):
        ImageFolderData(str(root), image_size=8).setup("fit")


def test_predict_loader_yields_one_row_per_file_with_its_path(tmp_path: Path) -> None:
    root = _image_folder(tmp_path / "ds")
    dm = ImageFolderData(str(root), image_size=8, channels=1, predict_dir=str(root / "test" / "cat"))
    dm.setup("predict")
    batch = next(iter(dm.predict_dataloader()))
    x, names = batch["input"], dm.data_spec().predict_names
    paths = [names[i] for i in batch["index"].tolist()]
    assert x.shape == (2, 1, 8, 8) and [Path(p).name for p in paths] == ["0.png", "1.png"]
    assert torch.allclose(dm.load_images(paths), x)


def test_predict_skips_an_unreadable_file_with_a_warning_and_keeps_the_others(tmp_path: Path) -> None:
    import shutil

    root = _image_folder(tmp_path / "ds")
    folder = Path(shutil.copytree(root / "test" / "cat", tmp_path / "to_predict"))
    (folder / "0b.png").write_text("not a png")  # sorts between the two valid files
    dm = ImageFolderData(str(root), image_size=8, channels=1, predict_dir=str(folder))
    dm.setup("predict")
    with pytest.warns(UserWarning, match=r"skipped 1 unreadable image file\(s\).*0b\.png is not a readable image"):
        names = dm.data_spec().predict_names
    rows = [names[i] for batch in dm.predict_dataloader() for i in batch["index"].tolist()]
    assert [Path(p).name for p in rows] == ["0.png", "1.png"] == [Path(p).name for p in names]
    (folder / "0.png").write_text("broken")
    (folder / "1.png").write_bytes(b"")
    dm = ImageFolderData(str(root), image_size=8, channels=1, predict_dir=str(folder))
    dm.setup("predict")
    with pytest.raises(ValueError, match="no readable image files"), pytest.warns(UserWarning):
        dm.data_spec()


def test_digits_quick_set() -> None:
    dm = DigitsData()
    dm.setup("fit")
    assert dm.image_size == 8 and dm.num_classes == 10
    assert len(dm.train_set) + len(dm.val_set) + len(dm.test_set) == 1797


def test_sampler_order_depends_only_on_seed_and_epoch_and_resumes_mid_epoch() -> None:
    s = ResumableSampler(10, seed=3)
    s.set_epoch(2)
    full = list(s)
    assert sorted(v - 20 for v in full) == list(range(10))  # virtual indices of epoch 2
    s2 = ResumableSampler(10, seed=3)
    s2.resume_at(2, 4)
    s2.set_epoch(2)
    assert list(s2) == full[4:]
    assert list(s2) == full, "the skip applies once"
    s2.set_epoch(3)
    assert list(s2) != [v + 10 for v in full]

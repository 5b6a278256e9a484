"""Image classification from prepared shards and lazily decoded folders: the same batches as in memory,
DDP shards that cover the epoch once, exact mid-epoch resume, and errors that name the bad shard."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from PIL import Image

from mmformer.cli.command import main as console_main
from mmformer.data import IdxImageData, ImageFolderData
from mmformer.data.shards.format import ShardError
from mmformer.data.shards.prepare import prepare
from tests.data.modules.test_images import write_idx


def image_folder(root: Path, n: int = 12) -> Path:
    rng = np.random.default_rng(0)
    for split, k in (("train", n), ("test", 3)):
        for cls, mode in (("cat", "RGB"), ("dog", "L")):
            (root / split / cls).mkdir(parents=True)
            for i in range(k):
                shape = (12, 10, 3) if mode == "RGB" else (9, 9)
                Image.fromarray(rng.integers(0, 255, shape, dtype=np.uint8), mode).save(root / split / cls / f"{i}.png")
    return root


def idx_root(root: Path, n: int = 90) -> Path:
    rng = np.random.default_rng(0)
    root.mkdir(parents=True, exist_ok=True)
    for prefix, k in (("train", n), ("t10k", 10)):
        write_idx(root / f"{prefix}-images-idx3-ubyte", rng.integers(0, 255, (k, 6, 6)))
        write_idx(root / f"{prefix}-labels-idx1-ubyte", np.arange(k) % 3)
    return root


def batches(dm, world: int = 1, rank: int = 0, resume: tuple[int, int] | None = None, epoch: int = 0) -> list[dict]:
    dm.trainer = SimpleNamespace(world_size=world, global_rank=rank) if world > 1 else None
    dm.setup("fit")
    dm._resume = resume
    loader = dm.train_dataloader()
    loader.sampler.set_epoch(epoch)
    return list(loader)


def assert_same(a: list[dict], b: list[dict]) -> None:
    assert len(a) == len(b)
    for x, y in zip(a, b):
        assert x.keys() == y.keys()
        for k in x:
            assert torch.equal(x[k], y[k]), k


KW = dict(image_size=8, channels=3, batch_size=5, val_fraction=0.25, seed=3)  # 18 of 24 images train


@pytest.fixture(scope="module", params=[False, True], ids=["files", "decoded"])
def folder_shards(tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest) -> tuple[Path, Path]:
    """An ImageFolder (RGB 12x10 and gray 9x9 PNGs, so every conversion and resize runs) and its shards,
    holding the files or (``prepare --decode``) their pixels."""
    tmp = tmp_path_factory.mktemp("folder")
    root = image_folder(tmp / "src")
    prepare("imagefolder", root, tmp / "shards", chunk_bytes="2KB", progress=False, decode=request.param)
    return root, tmp / "shards"


def test_shards_and_lazy_folder_give_the_in_memory_batches(folder_shards: tuple[Path, Path]) -> None:
    root, shards = folder_shards
    memory = ImageFolderData(str(root), **KW)
    for other in (ImageFolderData(shards=str(shards), **KW), ImageFolderData(str(root), lazy=True, **KW)):
        for epoch in (0, 1):
            assert_same(batches(memory, epoch=epoch), batches(other, epoch=epoch))
        assert other.classes == memory.classes and other.mean == memory.mean
        assert_same(list(memory.test_dataloader()), list(other.test_dataloader()))


def test_idx_shards_give_the_in_memory_batches(tmp_path: Path) -> None:
    root = idx_root(tmp_path / "idx")
    prepare("idx", root, tmp_path / "shards", chunk_bytes="1KB", progress=False)
    kw = dict(image_size=8, channels=1, batch_size=7, seed=1)
    assert_same(batches(IdxImageData(str(root), ["a", "b", "c"], **kw)),
                batches(IdxImageData(str(root), ["a", "b", "c"], shards=str(tmp_path / "shards"), **kw)))


@pytest.mark.parametrize("window", [None, 2])
def test_two_ranks_cover_the_epoch_once_and_resume_exactly(folder_shards: tuple[Path, Path], window) -> None:
    _, shards = folder_shards
    dm = lambda: ImageFolderData(shards=str(shards), chunk_window=window, **KW)  # noqa: E731
    full = [batches(dm(), 2, r, epoch=1) for r in (0, 1)]
    seen = torch.cat([b["index"] for rank in full for b in rank]).sort().values
    assert seen.tolist() == list(range(18)), "each of the 18 training samples once, across the two ranks"
    for r in (0, 1):  # a rank interrupted after 2 batches resumes with its own remaining batches
        assert_same(batches(dm(), 2, r, resume=(1, 2 * KW["batch_size"]), epoch=1), full[r][2:])


def test_prepare_is_a_no_op_when_done_and_restarts_an_interrupted_run(tmp_path: Path) -> None:
    root = image_folder(tmp_path / "src", n=4)
    out = tmp_path / "shards"
    (out / "train.partial").mkdir(parents=True)
    (out / "train.partial" / "chunk-0-0.bin").write_bytes(b"half")  # an interrupted run's leftovers
    prepare("imagefolder", root, out, chunk_bytes="2KB", progress=False)
    assert not (out / "train.partial").exists()
    stamp = {p: p.stat().st_mtime_ns for p in out.rglob("*")}
    assert console_main(["prepare", "imagefolder", str(root), str(out), "--no-progress"]) == 0
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*")} == stamp, "a finished output is left as it is"
    index = json.loads((out / "train" / "index.json").read_text())["mmformer"]
    assert index["kind"] == "image_classification" and index["count"] == 8


def test_bad_shards_are_named_before_training(folder_shards: tuple[Path, Path], tmp_path: Path,
                                              capsys: pytest.CaptureFixture) -> None:
    _, shards = folder_shards
    import shutil

    broken = tmp_path / "broken"
    shutil.copytree(shards, broken)
    chunk = sorted((broken / "train").glob("*.bin"))[1]
    chunk.write_bytes(chunk.read_bytes()[:10])
    with pytest.raises(ShardError, match=f"{chunk}.*truncated"):
        ImageFolderData(shards=str(broken), **KW).setup("fit")
    chunk.unlink()
    with pytest.raises(ShardError, match=f"{chunk}.*missing"):
        ImageFolderData(shards=str(broken), **KW).setup("fit")
    pairs = tmp_path / "pairs.tsv"
    pairs.write_text("hello\thola\ncat\tgato\n")
    prepare("pairs", pairs, tmp_path / "pairs", progress=False)
    (tmp_path / "other" / "train").parent.mkdir()
    shutil.copytree(tmp_path / "pairs", tmp_path / "other" / "train")
    with pytest.raises(ShardError, match="holds shards of a text_pairs dataset"):
        ImageFolderData(shards=str(tmp_path / "other"), **KW).setup("fit")
    idx = tmp_path / "idx"
    prepare("idx", idx_root(tmp_path / "idxsrc"), idx, progress=False)
    with pytest.raises(ShardError, match="holds 3 classes, more than this dataset's 2"):
        IdxImageData(str(tmp_path), ["a", "b"], shards=str(idx), **KW).setup("fit")
    with pytest.raises(ShardError, match="no shards at .*nowhere.*mmformer prepare"):
        ImageFolderData(shards=str(tmp_path / "nowhere"), **KW).setup("fit")
    with pytest.raises(ShardError, match="cannot read shards at nosuch://bucket/x/train"):
        ImageFolderData(shards="nosuch://bucket/x", **KW).setup("fit")
    assert console_main(["prepare", "imagefolder", str(tmp_path / "missing"), str(tmp_path / "o")]) == 1
    assert "source" in capsys.readouterr().err


def test_decoded_shards_are_another_output_and_only_for_image_folders(tmp_path: Path) -> None:
    root = image_folder(tmp_path / "src", n=2)
    prepare("imagefolder", root, tmp_path / "files", chunk_bytes="2KB", progress=False)
    with pytest.raises(ShardError, match="exists but is not finished shards"):  # not reported as done
        prepare("imagefolder", root, tmp_path / "files", chunk_bytes="2KB", progress=False, decode=True)
    assert console_main(["prepare", "imagefolder", str(root), str(tmp_path / "pixels"), "--decode", "--no-progress"]) == 0
    index = json.loads((tmp_path / "pixels" / "train" / "index.json").read_text())["mmformer"]
    assert index["fields"]["image"] == "array" and index["meta"]["pixels"] == "file"
    with pytest.raises(ValueError, match="--decode applies to imagefolder sources, not 'idx'"):
        prepare("idx", idx_root(tmp_path / "idx"), tmp_path / "idx-shards", progress=False, decode=True)

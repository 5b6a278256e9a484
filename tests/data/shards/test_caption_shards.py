"""CsvCaptionData from ``mmformer prepare manifest`` shards of its tables: the tables' vocabulary and batches."""

from __future__ import annotations

from pathlib import Path

import pytest

from mmformer.data.modules.captions import CsvCaptionData
from tests.data.manifests import png
from tests.data.modules.test_captions import CAPTIONS, _table
from tests.data.shards.common import assert_equal, epoch, prepare_splits


@pytest.mark.filterwarnings("ignore:.*larger than the target chunk")
def test_caption_shards_give_the_table_batches(tmp_path: Path) -> None:
    names = [Path(png(tmp_path / f"img{i}.png", (25 * i, 200 - 9 * i, 7 * i), 12 + i)).name for i in range(10)]
    caps = [CAPTIONS[i % len(CAPTIONS)] + f" number {i}" for i in range(10)]
    train = _table(tmp_path, list(zip(names[:7], caps[:7])))
    val = _table(tmp_path, list(zip(names[7:], caps[7:])), name="val.tsv")
    shards = prepare_splits("manifest", {"train": train, "val": val}, tmp_path / "shards", "2KB")
    kw = dict(image_size=16, batch_size=3, vocab_size=40, seed=1)
    memory = CsvCaptionData(str(train), str(val), data_dir=str(tmp_path / "d1"), **kw)
    streamed = CsvCaptionData(shards=shards, data_dir=str(tmp_path / "d2"), **kw)
    for dm in (memory, streamed):
        dm.setup("fit")
    assert memory.tokenize(["a red number 3"]).tolist() == streamed.tokenize(["a red number 3"]).tolist()
    for e in (0, 1):
        assert_equal(epoch(memory.train_dataloader(), e), epoch(streamed.train_dataloader(), e))
    assert_equal(list(memory.val_dataloader()), list(streamed.val_dataloader()))

"""ManifestData from ``mmformer prepare manifest`` shards: every field type gives the manifests' batches."""

from __future__ import annotations

from pathlib import Path

import pytest

from mmformer.data import ManifestData
from tests.data.manifests import ALL_FIELDS, sample_rows, write_manifest
from tests.data.shards.common import assert_equal, epoch, prepare_splits
from tests.data.test_manifest import ROLES


@pytest.mark.filterwarnings("ignore:.*cut", "ignore:.*larger than the target chunk")
def test_manifest_shards_give_the_manifest_batches(tmp_path: Path) -> None:
    files = {s: Path(write_manifest(tmp_path / f"{s}.jsonl", sample_rows(tmp_path, n, seed=k)))
             for k, (s, n) in enumerate((("train", 14), ("val", 5), ("test", 5)))}
    shards = prepare_splits("manifest", files, tmp_path / "shards", "8KB")
    kw = dict(fields=ALL_FIELDS, inputs=ROLES, vocab_size=40, batch_size=4, seed=3)
    memory = ManifestData(**{s: str(p) for s, p in files.items()}, data_dir=str(tmp_path / "d1"), **kw)
    streamed = ManifestData(shards=shards, data_dir=str(tmp_path / "d2"), **kw)
    for dm in (memory, streamed):
        dm.setup("fit")
    assert memory.classes == streamed.classes
    for e in (0, 1):
        assert_equal(epoch(memory.train_dataloader(), e), epoch(streamed.train_dataloader(), e))
    assert_equal(list(memory.val_dataloader()), list(streamed.val_dataloader()))
    assert_equal(list(memory.test_dataloader()), list(streamed.test_dataloader()))

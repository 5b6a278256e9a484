"""TranslationData from ``mmformer prepare pairs`` shards: the vocabulary and batches of the source files."""

from __future__ import annotations

from pathlib import Path

import pytest

from mmformer.data.modules.translation import TranslationData
from tests.data.modules.test_translation import toy_tsv
from tests.data.shards.common import assert_equal, epoch, prepare_splits

KW = dict(vocab_size=300, max_tokens=120, max_source_len=40, max_target_len=40, batch_size=8, seed=5)


@pytest.mark.parametrize("with_val", [False, True])
def test_translation_shards_give_the_file_batches(tmp_path: Path, with_val: bool) -> None:
    files = {"train": Path(toy_tsv(tmp_path / "train.tsv", 120)), "test": Path(toy_tsv(tmp_path / "test.tsv", 20, 1))}
    if with_val:
        files["val"] = Path(toy_tsv(tmp_path / "val.tsv", 20, 2))
    shards = prepare_splits("pairs", files, tmp_path / "shards")
    paths = {s: str(p) for s, p in files.items()}
    memory = TranslationData(**paths, data_dir=str(tmp_path / "d1"), **KW)
    streamed = TranslationData(shards=shards, data_dir=str(tmp_path / "d2"), **KW)
    for dm in (memory, streamed):
        dm.setup()
    pieces = [[dm.vocab.id_to_piece(i) for i in range(len(dm.vocab))] for dm in (memory, streamed)]
    assert pieces[0] == pieces[1], "one vocabulary from the same training pairs"
    for e in (0, 1):
        assert_equal(epoch(memory.train_dataloader(), e), epoch(streamed.train_dataloader(), e))
    assert_equal(list(memory.val_dataloader()), list(streamed.val_dataloader()))
    assert_equal(list(memory.test_dataloader()), list(streamed.test_dataloader()))

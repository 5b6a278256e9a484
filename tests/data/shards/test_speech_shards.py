"""SpeechRecognitionData from ``mmformer prepare nemo`` shards: the manifests' filtering, vocabulary and batches."""

from __future__ import annotations

from pathlib import Path

import pytest

from mmformer.data.modules.speech import SpeechRecognitionData
from mmformer.data.shards.dataset import ShardView
from tests.data.modules.test_speech import _manifest
from tests.data.shards.common import assert_equal, epoch, prepare_splits


@pytest.mark.filterwarnings("ignore:.*dropped", "ignore:.*larger than the target chunk")
def test_speech_shards_give_the_manifest_batches(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    files = {"train": _manifest(tmp_path, "train", [("hello world", 0.5, ""), ("Hello  THERE", 0.7, "stereo"),
                                                    ("low world", 0.3, "8k"), ("old hero", 0.4, "44k"),
                                                    ("too long", 3.0, ""), ("held low", 0.2, "")]),
             "val": _manifest(tmp_path, "val", [("hello", 0.4, "silent"), ("world", 0.2, "")]),
             "test": _manifest(tmp_path, "test", [("hello world!", 0.5, ""), ("old world", 0.3, "")])}
    shards = prepare_splits("nemo", {s: Path(p) for s, p in files.items()}, tmp_path / "shards", "16KB")
    kw = dict(units="char", vocab_size=32, batch_size=2, max_duration=2.0, unknown_chars="skip", seed=2)
    memory = SpeechRecognitionData(data_dir=str(tmp_path / "d1"), **{s: p for s, p in files.items()},
                                   **kw)
    streamed = SpeechRecognitionData(data_dir=str(tmp_path / "d2"), shards=shards, **kw)
    memory.setup("fit")
    reads: list[tuple[str, int]] = []  # (split folder, row) of every sample fetched from a chunk
    get = ShardView.__getitem__
    monkeypatch.setattr(ShardView, "__getitem__", lambda view, i: reads.append((Path(view.uri).name, int(i)))
                        or get(view, i))
    streamed.setup("fit")
    assert reads == [], "setup takes transcripts and durations from columns.json, never a chunk's audio"
    assert len(streamed.datasets["train"]) == 5, "the long clip is dropped from shards as from the manifest"
    for e in (0, 1):
        assert_equal(epoch(memory.train_dataloader(), e), epoch(streamed.train_dataloader(), e))
    assert_equal(list(memory.val_dataloader()), list(streamed.val_dataloader()))
    assert_equal(list(memory.test_dataloader()), list(streamed.test_dataloader()))
    assert sorted({i for split, i in reads if split == "train"}) == [0, 1, 2, 3, 5], \
        "the kept clips are read from the chunks as batches need them; the dropped long one (row 4) never is"

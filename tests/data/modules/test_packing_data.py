"""``pack_len`` on the DataModules: training batches are the padded ones (same order, so exact resume
holds) marked for packing; evaluation batches stay padded; the task plans them into rows."""

from __future__ import annotations

from pathlib import Path

import torch

from mmformer.backbone import BackboneConfig
from mmformer.data.modules.translation import TranslationData
from mmformer.tasks.seq2seq import Seq2SeqTask
from mmformer.tokenizers.text import TextTokenizer
from tests.data.modules.test_speech import _data as speech_data
from tests.data.modules.test_translation import toy_tsv
from mmformer.models.config import Seq2SeqConfig


def test_translation_batches_are_marked_and_plan_every_sample_once(tmp_path: Path) -> None:
    kw = dict(train=toy_tsv(tmp_path / "train.tsv"), data_dir=str(tmp_path / "data"), vocab_size=300,
              max_tokens=200, batch_size=16)
    plain, packed = TranslationData(**kw), TranslationData(**kw, pack_len=80)
    plain.setup("fit")
    packed.setup("fit")
    a, b = next(iter(plain.train_dataloader())), next(iter(packed.train_dataloader()))
    assert b.pop("pack_len") == 80 and torch.equal(a["source"], b["source"]) and a["id"] == b["id"]
    assert "pack_len" not in next(iter(packed.val_dataloader()))
    task = Seq2SeqTask(Seq2SeqConfig(lambda d: TextTokenizer(d, 300), 300, BackboneConfig(dim=16, depth=1, num_heads=2)))
    src_plan, tgt_plan = task.on_before_batch_transfer({**b, "pack_len": 80}, 0)["packing"]
    assert torch.equal(src_plan.length, (b["source"] != 0).sum(1)) and src_plan.width <= 80
    assert src_plan.rows < len(b["id"])  # several sentences a row
    loss = task._losses(task.on_before_batch_transfer({**b, "pack_len": 80}, 0))[0]
    assert torch.allclose(loss, task._losses(b)[0], atol=1e-5)


def test_speech_training_batches_are_marked_evaluation_ones_not(tmp_path: Path) -> None:
    dm = speech_data(tmp_path, unknown_chars="skip", pack_len=64)
    dm.setup("fit")
    assert next(iter(dm.train_dataloader()))["pack_len"] == 64
    assert "pack_len" not in next(iter(dm.val_dataloader()))

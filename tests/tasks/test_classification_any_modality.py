"""ClassificationTask over non-image modalities, from role-keyed batches ``{input, label, index}``:
text ids and audio (``AudioBatch``) fit, test and predict on CPU in seconds; text learns a toy set."""

from __future__ import annotations

import csv
from pathlib import Path
from types import SimpleNamespace

import pytest
import pytorch_lightning as pl
import torch

from mmformer.backbone import BackboneConfig
from mmformer.data.spec import DataSpec
from mmformer.tasks import ClassificationTask
from mmformer.tasks.classification import split_batch
from mmformer.tasks.optim import OptimConfig
from mmformer.tokenizers import TextTokenizer
from tests.tasks.roles import RoleData, audio_tokenizer, tones
from mmformer.models.config import ClassifierConfig

CLASSES = ["low", "mid", "high"]
BB = BackboneConfig(dim=32, depth=1, num_heads=2, mlp_ratio=2.0)


def _text_rows(n: int, seed: int) -> dict[str, torch.Tensor]:
    """Class k's sentences use only the words 4 + 6k .. 9 + 6k; lengths 2..8, right-padded with 0."""
    g = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, 3, (n,), generator=g)
    ids = 4 + 6 * labels[:, None] + torch.randint(0, 6, (n, 8), generator=g)
    lengths = torch.randint(2, 9, (n,), generator=g)
    return {"input": ids * (torch.arange(8) < lengths[:, None]), "label": labels}


def _trainer(tmp_path: Path, steps: int) -> pl.Trainer:
    return pl.Trainer(max_steps=steps, default_root_dir=tmp_path, accelerator="cpu", logger=False,
                      enable_progress_bar=False, enable_checkpointing=False, enable_model_summary=False,
                      num_sanity_val_steps=0, limit_val_batches=0)


def _predictions(tmp_path: Path) -> list[dict[str, str]]:
    return list(csv.DictReader(open(tmp_path / "predictions.csv")))


def test_text_classification_learns_a_separable_toy_set_and_predicts_by_name(tmp_path: Path) -> None:
    torch.manual_seed(0)
    task = ClassificationTask(ClassifierConfig(lambda d: TextTokenizer(d, vocab_size=24, max_len=8), num_classes=3, backbone=BB), optim=OptimConfig(lr=3e-3, warmup_fraction=0.1))
    test = _text_rows(96, 1)
    data = RoleData({"train": _text_rows(512, 0), "test": test, "predict": {"input": test["input"][:5]}},
                    DataSpec(class_names=CLASSES), batch_size=32)
    trainer = _trainer(tmp_path, 20)
    trainer.fit(task, datamodule=data)
    (metrics,) = trainer.test(task, datamodule=data, verbose=False)
    assert metrics["test/acc"] > 0.9, metrics  # chance: 1/3
    assert task.class_names == CLASSES  # bound from the data
    assert not (tmp_path / "attention_overlays.png").exists()  # text: no image to draw attention on
    trainer.predict(task, datamodule=data)
    rows = _predictions(tmp_path)
    assert [r["id"] for r in rows] == [f"item{i}" for i in range(5)]  # index → the data's predict_names
    assert [r["class"] for r in rows] == [CLASSES[int(r["label"])] for r in rows]
    assert sum(int(r["label"]) == y for r, y in zip(rows, test["label"][:5].tolist())) >= 4


def test_audio_classification_fits_tests_and_predicts(tmp_path: Path) -> None:
    torch.manual_seed(0)
    labels, test_labels = torch.arange(48) % 3, torch.arange(24) % 3
    data = RoleData({"train": {"input": tones(labels, 0), "label": labels},
                     "test": {"input": tones(test_labels, 1), "label": test_labels},
                     "predict": {"input": tones(test_labels[:4], 2)}}, DataSpec(class_names=CLASSES), batch_size=8)
    task = ClassificationTask(ClassifierConfig(audio_tokenizer, num_classes=3, backbone=BB), optim=OptimConfig(lr=3e-3))
    trainer = _trainer(tmp_path, 6)
    trainer.fit(task, datamodule=data)
    assert trainer.global_step == 6
    (metrics,) = trainer.test(task, datamodule=data, verbose=False)
    assert 0.0 <= metrics["test/acc"] <= 1.0 and (tmp_path / "confusion_matrix.png").stat().st_size > 1000
    out = trainer.predict(task, datamodule=data)
    assert torch.cat([o["label"] for o in out]).shape == (4,)
    assert [r["id"] for r in _predictions(tmp_path)] == ["item0", "item1", "item2", "item3"]


def test_mixup_on_inputs_that_are_not_images_is_a_clear_error(tmp_path: Path) -> None:
    task = ClassificationTask(ClassifierConfig(lambda d: TextTokenizer(d, vocab_size=24, max_len=8), num_classes=3, backbone=BB), mixup=0.8)
    data = RoleData({"train": _text_rows(32, 0)}, DataSpec(class_names=CLASSES))
    with pytest.raises(ValueError, match=r"mixup/cutmix mix images .* torch.int64 tensor of shape \(16, 8\)"):
        _trainer(tmp_path, 1).fit(task, datamodule=data)


def test_batches_are_role_dicts_or_input_label_tuples_and_anything_else_is_named() -> None:
    x, y = torch.zeros(2, 3), torch.tensor([0, 1])
    assert split_batch({"input": x, "label": y, "index": torch.tensor([5, 6])})[1] is y
    assert split_batch({"input": x, "label": y, "index": y}, "index")[1] is y  # predict reads rows, not labels
    assert split_batch((x, y))[0] is x  # a plain user DataModule's (inputs, labels)
    with pytest.raises(KeyError, match=r"roles 'input' and 'label'.*got keys \['image', 'label'\]"):
        split_batch({"image": x, "label": y})
    with pytest.raises(TypeError, match="got Tensor"):
        split_batch(x)


def test_a_text_tokenizer_of_another_size_than_the_data_vocabulary_fails_at_start_up(tmp_path: Path) -> None:
    def task(tokenizer) -> ClassificationTask:  # type: ignore[no-untyped-def]
        return ClassificationTask(ClassifierConfig(tokenizer, num_classes=3, backbone=BB), optim=OptimConfig(lr=3e-3))

    def data(vocab_size: int, rows: dict) -> RoleData:
        return RoleData({"train": rows}, DataSpec(class_names=CLASSES, vocab=SimpleNamespace(vocab_size=vocab_size)))

    text = task(lambda d: TextTokenizer(d, vocab_size=24, max_len=8))
    before = [p.detach().clone() for p in text.parameters()]
    with pytest.raises(ValueError, match=r"vocabulary has 40 pieces but the text tokenizer was built for "
                                         r"vocab_size=24; leave the tokenizer's vocab_size out of the model section "
                                         r"\(it follows the data\), or set it to 40"):
        _trainer(tmp_path, 1).fit(text, datamodule=data(40, _text_rows(32, 0)))
    assert all(torch.equal(a, b) for a, b in zip(before, text.parameters())), "it failed before any step"
    trainer = _trainer(tmp_path, 1)
    trainer.fit(text, datamodule=data(24, _text_rows(32, 0)))  # the sizes agree
    assert trainer.global_step == 1
    labels = torch.arange(16) % 3  # not a text tokenizer: a data vocabulary is not its concern
    trainer = _trainer(tmp_path, 1)
    trainer.fit(task(audio_tokenizer), datamodule=data(40, {"input": tones(labels, 0), "label": labels}))
    assert trainer.global_step == 1

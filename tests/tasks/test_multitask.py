"""MultiTaskTask in a Trainer: per-task metric names, loss weights, clear errors, and exact resume of the
task sequence *and* batches from a mid-run checkpoint (two digit classifiers over one shared backbone)."""

from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import Any

import pytest
import pytorch_lightning as pl
import torch

from mmformer.backbone import BackboneConfig
from mmformer.data import DigitsData
from mmformer.data.modules.multitask import MultiTaskData
from mmformer.data.spec import DataSpec
from mmformer.tasks import ClassificationTask
from mmformer.tasks.multitask import MultiTaskTask, task_metric_name
from mmformer.tokenizers import ImagePatchTokenizer

TINY = BackboneConfig(dim=16, depth=1, num_heads=2, mlp_ratio=2.0, causal=True)


def _child(classes: int = 10) -> partial[ClassificationTask]:
    """A task as MultiTaskTask takes it: a factory, which it calls with the shared backbone."""
    return partial(ClassificationTask, lambda dim: ImagePatchTokenizer(dim, image_size=8, patch_size=4, in_chans=1,
                                                                       cls_token=False), classes)


def _task(**kw: Any) -> MultiTaskTask:
    torch.manual_seed(0)
    return MultiTaskTask({"even": _child(), "odd": _child()}, backbone=TINY, **kw)


def _data() -> MultiTaskData:
    return MultiTaskData({"even": DigitsData(batch_size=400, seed=0), "odd": DigitsData(batch_size=300, seed=1)},
                         sampling="fixed", weights={"even": 0.6, "odd": 0.4}, seed=5)


class _Record(pl.Callback):
    """Each training step's task and sample rows."""

    def __init__(self) -> None:
        self.steps: list[tuple[str, list[int]]] = []

    def on_train_batch_start(self, trainer: pl.Trainer, module: pl.LightningModule, batch: Any, batch_idx: int) -> None:
        (name, b), = batch.items()
        self.steps.append((name, b["index"].tolist()))


def _trainer(root: Path, max_steps: int, *callbacks: pl.Callback) -> pl.Trainer:
    return pl.Trainer(max_steps=max_steps, default_root_dir=root, logger=False, enable_progress_bar=False,
                      enable_model_summary=False, limit_val_batches=1, val_check_interval=4,
                      num_sanity_val_steps=0, callbacks=list(callbacks), log_every_n_steps=1)


def test_metric_names_carry_the_task() -> None:
    assert task_metric_name("fmnist", "test/acc") == "test/fmnist/acc"
    assert task_metric_name("speech", "val/ppl_bigram") == "val/speech/ppl_bigram"
    assert task_metric_name("x", "loss") == "x/loss"


def test_fit_logs_per_task_metrics_and_test_runs_every_task(tmp_path: Path) -> None:
    task = _task(loss_weights={"even": 1.0, "odd": 0.5})
    trainer = _trainer(tmp_path, 4)
    trainer.fit(task, datamodule=_data())
    logged = trainer.callback_metrics
    assert {"train/loss", "val/even/acc", "val/odd/acc", "val/even/loss", "val/odd/loss"} <= set(logged)
    assert {"train/even/loss", "train/odd/loss"} & set(logged)
    results = trainer.test(task, datamodule=_data(), verbose=False)
    names = set().union(*results)
    assert {"test/even/acc", "test/odd/acc"} <= names and not [n for n in names if "dataloader_idx" in n]


def test_resume_from_a_mid_run_checkpoint_repeats_the_uninterrupted_tasks_and_batches(tmp_path: Path) -> None:
    full = _Record()
    _trainer(tmp_path / "full", 10, full).fit(_task(), datamodule=_data())
    assert len(full.steps) == 10 and {n for n, _ in full.steps} == {"even", "odd"}

    ckpt = pl.callbacks.ModelCheckpoint(dirpath=tmp_path / "ckpt", every_n_train_steps=4, save_top_k=-1)
    _trainer(tmp_path / "first", 4, ckpt).fit(_task(), datamodule=_data())
    resumed = _Record()
    _trainer(tmp_path / "second", 10, resumed).fit(_task(), datamodule=_data(),
                                                   ckpt_path=str(tmp_path / "ckpt" / "epoch=0-step=4.ckpt"))
    assert resumed.steps == full.steps[4:]


def test_errors_are_clear() -> None:
    with pytest.raises(ValueError, match=r"loss_weights name unknown tasks \['x'\]"):
        _task(loss_weights={"x": 1.0})
    with pytest.raises(ValueError, match="loss_weights must be >= 0"):
        _task(loss_weights={"even": -1.0})
    with pytest.raises(ValueError, match="not all 0"):
        _task(loss_weights={"even": 0.0, "odd": 0.0})
    with pytest.raises(TypeError, match="is a Linear instance; give a TaskModule class or factory"):
        MultiTaskTask({"a": torch.nn.Linear(2, 2)})  # type: ignore[dict-item]
    with pytest.raises(TypeError, match="is a ClassificationTask instance"):  # built alone, with its own model
        MultiTaskTask({"a": _child()(backbone=TINY)})  # type: ignore[dict-item]
    with pytest.raises(TypeError, match="made a Linear, not an mmformer TaskModule"):
        MultiTaskTask({"a": lambda backbone: torch.nn.Linear(2, 2)})  # type: ignore[dict-item]
    with pytest.raises(ValueError, match="'a' sets a backbone of its own"):
        MultiTaskTask({"a": partial(_child(), backbone=BackboneConfig(dim=32))}, backbone=TINY)
    with pytest.raises(ValueError, match="without '/'"):
        MultiTaskTask({"a/b": _child()}, backbone=TINY)
    task = _task()
    with pytest.raises(ValueError, match=r"no DataModule for \['odd'\]"):
        task.bind_data(DataSpec(tasks={"even": DataSpec()}), "fit")
    with pytest.raises(ValueError, match=r"no task for data \['zz'\]"):
        task.bind_data(DataSpec(tasks={"even": DataSpec(), "odd": DataSpec(), "zz": DataSpec()}), "fit")
    with pytest.raises(ValueError, match="built for num_classes=10"):  # each child checks its own data
        task.bind_data(DataSpec(tasks={"even": DataSpec(class_names=["a", "b"]), "odd": DataSpec()}), "fit")

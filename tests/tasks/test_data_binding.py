"""Tasks take what they need from their data through DataSpec only (required_data + bind_data),
with errors that name the mismatch; the decision transformer copies statistics on fit only."""

from __future__ import annotations

from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, TensorDataset

from mmformer.backbone import BackboneConfig
from mmformer.data.spec import ControlSpec, DataSpec, ProvidesDataSpec
from mmformer.tasks import ClassificationTask, DecisionTransformerTask
from mmformer.tokenizers import ImagePatchTokenizer
from mmformer.tokenizers.trajectory import TrajectoryTokenizer
from mmformer.models.config import ClassifierConfig, DecisionTransformerConfig

ROOT = Path(__file__).resolve().parents[2]
TASKS = ROOT / "mmformer" / "tasks"


class Blobs(pl.LightningDataModule, ProvidesDataSpec):
    """Images whose mean brightness is the class."""

    def __init__(self, class_names: list[str]) -> None:
        super().__init__()
        self.class_names = class_names

    def data_spec(self) -> DataSpec:
        return DataSpec(class_names=self.class_names)

    def train_dataloader(self) -> DataLoader:
        g = torch.Generator().manual_seed(0)
        y = torch.randint(0, len(self.class_names), (32,), generator=g)
        x = y.float().view(-1, 1, 1, 1) + 0.1 * torch.randn(32, 1, 8, 8, generator=g)
        return DataLoader(TensorDataset(x, y), batch_size=8)


def _classifier(num_classes: int = 3) -> ClassificationTask:
    return ClassificationTask(ClassifierConfig(lambda d: ImagePatchTokenizer(d, image_size=8, patch_size=4, in_chans=1), num_classes, BackboneConfig(dim=16, depth=1, num_heads=2)))


def _trainer(tmp_path: Path) -> pl.Trainer:
    return pl.Trainer(max_steps=2, default_root_dir=tmp_path, logger=False, enable_progress_bar=False,
                      enable_checkpointing=False, enable_model_summary=False, accelerator="cpu")


def test_classification_binds_class_names_and_names_a_count_mismatch(tmp_path: Path) -> None:
    task = _classifier()
    _trainer(tmp_path).fit(task, datamodule=Blobs(["a", "b", "c"]))
    assert task._names() == ["a", "b", "c"]
    with pytest.raises(ValueError, match="the data has 2 classes .* num_classes=3; leave .*num_classes out .* set it to 2"):
        _trainer(tmp_path).fit(_classifier(), datamodule=Blobs(["a", "b"]))


def test_a_plain_datamodule_serves_tasks_that_need_nothing_and_is_named_by_those_that_do(tmp_path: Path) -> None:
    plain = type("PlainData", (pl.LightningDataModule,), {"train_dataloader": Blobs.train_dataloader,
                                                          "class_names": ["a", "b", "c"]})
    task = _classifier()
    _trainer(tmp_path).fit(task, datamodule=plain())
    assert task._names() == ["0", "1", "2"]  # nothing declared: class ids
    dt = _dt()
    with pytest.raises(ValueError, match="DecisionTransformerTask needs control from its data, but PlainData "
                                         "does not declare it"):
        _trainer(tmp_path).fit(dt, datamodule=plain())


def _control(**kw) -> ControlSpec:
    args = dict(env_id="CartPole-v1", context=4, state_dim=4, act_dim=2, discrete=True,
                state_mean=torch.tensor([1.0, 2.0, 3.0, 4.0]), state_std=torch.tensor([2.0, 2.0, 2.0, 2.0]),
                ref_returns=(20.0, 500.0), dataset_returns=torch.tensor([10.0, 30.0]))
    return ControlSpec(**{**args, **kw})  # type: ignore[arg-type]


def _dt() -> DecisionTransformerTask:
    return DecisionTransformerTask(DecisionTransformerConfig(lambda d: TrajectoryTokenizer(d, state_dim=4, act_dim=2), BackboneConfig(dim=16, depth=1, num_heads=2), context=4))


def test_decision_transformer_copies_statistics_on_fit_only() -> None:
    task = _dt()
    before = {k: v.clone() for k, v in task.state_dict().items()}
    task.bind_data(DataSpec(control=_control()), "test")  # test: the checkpoint's buffers (loaded next) win
    assert all(torch.equal(before[k], v) for k, v in task.state_dict().items())
    assert task.env_id == "CartPole-v1"
    task.bind_data(DataSpec(control=_control()), "fit")
    assert torch.equal(task.model.tokenizer.state_mean, torch.tensor([1.0, 2.0, 3.0, 4.0]))
    assert task.return_stats.tolist() == [20.0, 500.0, 20.0, 30.0]


@pytest.mark.parametrize("kw,message", [
    ({"context": 5}, "data.context=5 but model.context=4"),
    ({"state_dim": 3}, "tokenizer is set to state_dim=4"),
    ({"discrete": False}, "continuous actions"),
    ({"act_dim": 3}, "act_dim=2"),
])
def test_decision_transformer_names_data_that_does_not_fit(kw: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        _dt().bind_data(DataSpec(control=_control(**kw)), "fit")


def test_no_task_reads_the_datamodule_itself() -> None:
    for path in TASKS.glob("*.py"):
        text = path.read_text()
        hits = [n for n in ("datamodule", "getattr(dm", "_dm(") if n in text]
        if path.name == "base.py":  # the one place: TaskModule.setup asks the trainer for the spec
            assert text.count("trainer.datamodule") == 1, path
        else:
            assert not hits, (path.name, hits)


def test_a_model_left_to_data_that_never_comes_is_one_error_at_predict() -> None:
    """Sizes left to the data, predict without data that declares them and without a checkpoint: one error
    naming what is missing and the two ways to give it, not a NoneType error at the first batch."""
    from functools import partial

    from mmformer.models.config import ClassifierConfig

    task = ClassificationTask(ClassifierConfig(partial(ImagePatchTokenizer, image_size=8, patch_size=4, in_chans=1),
                                               backbone=BackboneConfig(dim=16, depth=1, num_heads=2)))
    assert task.model is None  # num_classes waits for the data
    trainer = pl.Trainer(logger=False, enable_progress_bar=False, enable_checkpointing=False)
    with pytest.raises(ValueError, match="model was never built: its num_classes come from the data or a checkpoint"):
        trainer.predict(task, DataLoader([torch.rand(1, 8, 8)] * 2, batch_size=2))

"""A checkpoint that does not fit the task says who wrote it and what differs (not Lightning's key wall)."""

from __future__ import annotations

from typing import Any

import pytest
import torch

from mmformer.backbone import BackboneConfig
from mmformer.tasks import ClassificationTask, DecisionTransformerTask
from mmformer.tasks.checkpoint_fit import WRITER_KEY
from mmformer.tokenizers import ImagePatchTokenizer
from mmformer.tokenizers.trajectory import TrajectoryTokenizer
from mmformer.models.config import ClassifierConfig, DecisionTransformerConfig


def _classifier(dim: int = 16, depth: int = 1, num_classes: int = 3) -> ClassificationTask:
    return ClassificationTask(ClassifierConfig(lambda d: ImagePatchTokenizer(d, image_size=8, patch_size=4, in_chans=1), num_classes, BackboneConfig(dim=dim, depth=depth, num_heads=2)))


def _saved(task: torch.nn.Module) -> dict[str, Any]:
    ckpt: dict[str, Any] = {"state_dict": task.state_dict()}
    task.on_save_checkpoint(ckpt)
    return ckpt


def test_a_fitting_checkpoint_loads_and_records_its_writer() -> None:
    ckpt = _saved(_classifier())
    assert ckpt[WRITER_KEY]["class"] == "mmformer.tasks.classification.ClassificationTask"
    assert ckpt[WRITER_KEY]["backbones"]["model.backbone"]["dim"] == 16
    task = _classifier()
    task.on_load_checkpoint(ckpt)
    task.load_state_dict(ckpt["state_dict"])


def test_another_model_size_is_named_with_the_fields_that_differ() -> None:
    ckpt = _saved(_classifier(dim=16, depth=1))
    with pytest.raises(ValueError) as info:
        _classifier(dim=32, depth=2).on_load_checkpoint(ckpt)
    msg = str(info.value)
    assert "written by mmformer.tasks.classification.ClassificationTask" in msg
    assert "model.backbone (checkpoint vs this run): dim 16 vs 32, depth 1 vs 2" in msg
    assert "missing keys (model.backbone.blocks.1." in msg and "shape mismatches" in msg
    assert "Missing key(s)" not in msg


def test_another_task_and_other_settings_are_named() -> None:
    dt = DecisionTransformerTask(DecisionTransformerConfig(lambda d: TrajectoryTokenizer(d, state_dim=4, act_dim=2), BackboneConfig(dim=16, depth=1, num_heads=2), context=4))
    with pytest.raises(ValueError, match=r"written by mmformer\.tasks\.decision_transformer\.DecisionTransformerTask"
                                         r"; task: checkpoint .*DecisionTransformerTask, this run .*ClassificationTask"):
        _classifier().on_load_checkpoint(_saved(dt))
    # same task and sizes, another head: the message says the difference is elsewhere
    with pytest.raises(ValueError, match="same task and backbone sizes.*class counts.*model.head.fc.weight"):
        _classifier(num_classes=5).on_load_checkpoint(_saved(_classifier(num_classes=3)))

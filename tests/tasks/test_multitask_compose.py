"""MultiTaskTask is assembled from its tasks' model configs: one backbone instance (parameter identity), no task
holding a model or weights of its own, the weights those of ``build(MultiTaskConfig)``, the state_dict keys of
earlier checkpoints; a size left to the data builds the model when the data is bound; the command line needs
no hook to give every task the shared width."""

from __future__ import annotations

from dataclasses import replace
from functools import partial
from pathlib import Path

import pytest
import torch

from mmformer.backbone import BackboneConfig, Encoder
from mmformer.data.spec import DataSpec
from mmformer.models.builders import build
from mmformer.models.config import (ClassifierConfig, DecisionTransformerConfig, ModelConfig, MultiTaskConfig, PrefixLMConfig,
                                    classifier_config)
from mmformer.tasks import ClassificationTask
from mmformer.tasks.base import TaskModule
from mmformer.tasks.decision_transformer import DecisionTransformerTask
from mmformer.models.data_fields import unset_fields
from mmformer.tasks.multitask import MultiTaskTask, SharedBackbone
from mmformer.tasks.prefix_lm import PrefixLMTask
from mmformer.tokenizers import ImagePatchTokenizer, TextTokenizer
from mmformer.tokenizers.trajectory import TrajectoryTokenizer

TINY = BackboneConfig(dim=16, depth=1, num_heads=2, mlp_ratio=2.0, causal=True)
IMAGE = partial(ImagePatchTokenizer, image_size=8, patch_size=4, in_chans=1, cls_token=False)


def _task() -> MultiTaskTask:
    torch.manual_seed(0)
    return MultiTaskTask({
        "images": partial(ClassificationTask, model=ClassifierConfig(IMAGE, 3)),
        "text": partial(PrefixLMTask, model=PrefixLMConfig(20, partial(TextTokenizer, vocab_size=20, max_len=16), max_len=16, share_prefix_embedding=True)),
        "control": partial(DecisionTransformerTask, model=DecisionTransformerConfig(partial(TrajectoryTokenizer, state_dim=3, act_dim=2, discrete_actions=True), context=4)),
    }, model=SharedBackbone(TINY))


def test_one_backbone_instance_and_no_task_holds_its_own_copy() -> None:
    task = _task()
    shared = task.model.backbone
    assert [m for m in task.modules() if isinstance(m, Encoder)] == [shared]  # modules() yields each instance once
    shared_ids = {id(p) for p in shared.parameters()}
    for name, child in task.tasks.items():
        assert child.model is task.model[name] and child.model.backbone is shared
        assert "model" not in child._modules and not list(child.parameters())  # the composite owns every weight
        assert {id(p) for p in child.model.backbone.parameters()} == shared_ids
    assert sum(p.numel() for p in task.parameters()) == sum(p.numel() for p in task.model.parameters())
    child = task.tasks["images"]
    child.build_model(child.model_config)  # type: ignore[arg-type]  # an attached task builds no model of its own
    assert "model" not in child._modules and child.model is task.model["images"]


def test_the_weights_are_those_of_build_multitask_config_and_the_keys_those_of_earlier_checkpoints() -> None:
    task = _task()
    assert isinstance(task.model_config, MultiTaskConfig) and task.model_config.backbone == TINY
    assert {n: type(c).__name__ for n, c in task.model_config.models.items()} == {
        "images": "ClassifierConfig", "text": "PrefixLMConfig", "control": "DecisionTransformerConfig"}
    torch.manual_seed(0)
    built = build(task.model_config).state_dict()
    state = task.state_dict()
    assert set(state) == {f"model.{k}" for k in built} | {"tasks.control.return_stats"}
    for key, value in built.items():
        assert torch.equal(state[f"model.{key}"], value), key
    # the layout every earlier checkpoint has: the shared stack and each task's model, nothing under tasks.<t>.model
    assert any(k.startswith("model.backbone.blocks.0.") for k in state)
    assert any(k.startswith("model.models.images.head.") for k in state)
    assert not [k for k in state if k.startswith("tasks.") and ".model." in k]


def test_every_task_gets_the_shared_width() -> None:
    task = _task()
    for child in task.tasks.values():
        assert child.model_config.backbone.dim == TINY.dim  # type: ignore[union-attr]
    images = torch.rand(2, 1, 8, 8)
    assert task.model("images", images).shape == (2, 3)


def test_a_size_left_to_the_data_builds_the_model_when_the_data_is_bound() -> None:
    sized_by_data = partial(ClassificationTask, model=ClassifierConfig(IMAGE))  # num_classes left to the data
    task = MultiTaskTask({"a": sized_by_data, "b": partial(ClassificationTask, model=ClassifierConfig(IMAGE, 3))}, model=SharedBackbone(TINY))
    assert unset_fields(task.tasks["a"].model_config) == ["num_classes"]  # type: ignore[arg-type]
    assert task.model is None and task.model_config is None and not list(task.parameters())
    task.bind_data(DataSpec(tasks={"a": DataSpec(class_names=["x", "y", "z", "w"]), "b": DataSpec()}), "fit")
    assert task.model("a", torch.rand(2, 1, 8, 8)).shape == (2, 4)
    assert task.tasks["a"].model.backbone is task.model.backbone is task.tasks["b"].model.backbone
    assert list(task.state_dict())[0].startswith("model.")  # the model keeps its place ahead of the tasks

    assert task.tasks["a"].metrics["val_acc"].num_classes == 4  # the task's own metrics follow the built size
    unsized = MultiTaskTask({"a": sized_by_data, "b": partial(ClassificationTask, model=ClassifierConfig(IMAGE, 3))}, model=SharedBackbone(TINY))
    unsized.bind_data(DataSpec(tasks={"b": DataSpec()}), "predict")  # task a has no data to predict on:
    assert unsized.model is None  # the model waits for the checkpoint's stored config (on_load_checkpoint)
    checkpoint: dict = {}
    task.on_save_checkpoint(checkpoint)
    unsized.build_from_checkpoint(checkpoint)
    assert unsized.model("a", torch.rand(2, 1, 8, 8)).shape == (2, 4)  # task a's 4 classes, from training's data
    with pytest.raises(ValueError, match=r"the model's num_classes is not set and the data does not declare "
                                         r"class_names"):
        MultiTaskTask({"a": sized_by_data}, model=SharedBackbone(TINY)).bind_data(
            DataSpec(tasks={"a": DataSpec()}), "fit")


def test_the_command_line_builds_every_task_at_the_shared_width(tmp_path: Path) -> None:
    """No CLI hook: MultiTaskTask itself gives each task model.init_args.model.backbone."""
    from mmformer.cli import main

    child = {"class_path": "mmformer.tasks.ClassificationTask", "init_args": {"model": {
        "tokenizer": {"class_path": "mmformer.tokenizers.ImagePatchTokenizer",
                      "init_args": {"image_size": 8, "patch_size": 4, "in_chans": 1, "cls_token": False}},
        "num_classes": 10}}}
    digits = {"class_path": "mmformer.data.DigitsData", "init_args": {"batch_size": 8}}
    cli = main(["--model", "mmformer.tasks.multitask.MultiTaskTask",
                "--model.init_args.tasks", str({"even": child, "odd": child}).replace("'", '"'),
                "--model.init_args.model.backbone.dim=24", "--model.init_args.model.backbone.depth=1",
                "--model.init_args.model.backbone.num_heads=2",
                "--data", "mmformer.data.MultiTaskData",
                "--data.init_args.datamodules", str({"even": digits, "odd": digits}).replace("'", '"'),
                "--trainer.logger=false", f"--trainer.default_root_dir={tmp_path}"], run=False)
    task = cli.model
    assert isinstance(task, MultiTaskTask) and task.model.backbone.config.dim == 24
    for name in ("even", "odd"):
        assert task.model[name].backbone is task.model.backbone
        assert task.model[name](torch.rand(2, 1, 8, 8)).shape == (2, 10)

"""One model, several tasks, one checkpoint: existing task modules (classification, prefix LMs for translation
and speech, a decision transformer...) composed around a single shared causal backbone
(:class:`~mmformer.models.multitask.MultiTaskModel`).

Each task is given as a factory of the ordinary task module (in YAML a ``class_path`` with its ``init_args``).
This module creates each task inside :func:`~mmformer.tasks.composition.composing`, where a task records its
model config and builds no weights, and replaces that config's ``backbone`` by the shared one (so its tokenizers
and heads have the shared width; a task that sets a different backbone of its own is refused); it then builds the
one model from those configs (``build(MultiTaskConfig)``) and hands each task its
part and a logging function (:meth:`~mmformer.tasks.composition.Composable.attach`). The tasks keep their own
losses, metrics and evaluation, and this module routes to them: a training batch ``{task: batch}``
(:class:`~mmformer.data.modules.multitask.MultiTaskData`) runs that task's ``training_step`` with loss
``Σ_t loss_weight_t · loss_t``; evaluation batches come one task's loader after another and ``dataloader_idx``
names the task. Every name a task logs gets the task inserted: ``train/loss`` → ``train/<task>/loss``,
``test/acc`` → ``test/<task>/acc``.
"""

from __future__ import annotations

import dataclasses
import functools
from dataclasses import dataclass, field, replace
from typing import Any, Callable, ClassVar, Mapping

import pytorch_lightning as pl
import torch
from pytorch_lightning.trainer.states import RunningStage
from torch import Tensor, nn

from mmformer.backbone import BackboneConfig
from mmformer.data.spec import DataSpec
from mmformer.models.config import ModelConfig, MultiTaskConfig, multitask_config
from mmformer.models.builders import build, config_from_dict
from mmformer.models.data_fields import fill_unset, unset_fields
from mmformer.models.multitask import MultiTaskModel
from mmformer.tasks.base import MODEL_CONFIG_KEY, TaskModule
from mmformer.tasks.composition import TaskContext, composing
from mmformer.tasks.optim import OptimConfig, build_optimizer

TASKS_KEY = "mmformer_tasks"  # checkpoint entry: {task: what that child keeps beside its weights}
_BASE_KEYS = ("mmformer_rng", "mmformer_task", "mmformer_lora")  # the parent's own copies serve


def task_metric_name(task: str, name: str) -> str:
    """``train/loss`` → ``train/<task>/loss``; a name without a stage gets the task in front."""
    stage, sep, rest = name.partition("/")
    return f"{stage}/{task}/{rest}" if sep else f"{task}/{name}"


def _default_backbone(cfg: Any) -> BackboneConfig:
    """The backbone ``cfg``'s family has when none is given (its field's default, normalized by the family)."""
    default = next(f for f in dataclasses.fields(cfg) if f.name == "backbone")
    value = default.default_factory() if default.default_factory is not dataclasses.MISSING else default.default
    return replace(cfg, backbone=value).backbone


def _create(name: str, make: Callable[[], TaskModule], backbone: BackboneConfig) -> TaskModule:
    """Task ``name`` from its factory, its model config's ``backbone`` replaced by the shared one (a task that sets
    a backbone of its own, neither its family's default nor the shared one, is refused)."""
    if isinstance(make, nn.Module) or not callable(make):
        raise TypeError(f"task {name!r} is a {type(make).__name__} instance; give a TaskModule factory (in python "
                        f"functools.partial(ClassificationTask, model=...), in YAML a class_path with init_args) "
                        f"so that MultiTaskTask creates it and gives its model the shared backbone")
    child = make()
    cfg = getattr(child, "model_config", None)
    if not isinstance(child, TaskModule) or cfg is None:
        raise TypeError(f"task {name!r} made a {type(child).__name__}, not an mmformer TaskModule that builds its "
                        f"model from a model config (self.build_model(config))")
    if not dataclasses.is_dataclass(cfg) or "backbone" not in {f.name for f in dataclasses.fields(cfg)}:
        raise TypeError(f"task {name!r}'s model config {type(cfg).__name__} has no backbone to share")
    shared = replace(cfg, backbone=backbone)
    if cfg.backbone not in (_default_backbone(cfg), shared.backbone):
        raise ValueError(f"task {name!r} sets a backbone of its own ({cfg.backbone}); the tasks share one: set "
                         f"model.init_args.model.backbone and drop model.init_args.tasks.{name}.init_args.model.backbone")
    child.model_config = shared  # recorded only (inside composing()); the composite builds every model at once
    return child


@dataclass
class SharedBackbone:
    """:class:`MultiTaskTask`'s own model config: the backbone its tasks share (each task's model config holds the
    rest), under ``model`` like every task's, so ``model.init_args.model.backbone`` (configs/model/*.yaml) sizes it."""

    backbone: BackboneConfig = field(default_factory=BackboneConfig)  # the shared stack (built causal; each task
    # picks its mask per call); every task's model config gets it in place of its own


class MultiTaskTask(TaskModule):
    """Several task modules trained as one model over one shared backbone.

    Args:
        tasks: task name → a factory of its task module (in YAML a ``class_path`` each, with its usual
            ``init_args``; in python a ``functools.partial`` of a task class). Each task's model config gets this
            module's ``model.backbone`` in place of its own (``dataclasses.replace``), so its tokenizers and heads have
            the shared width; leave ``model.backbone`` out of a task's ``init_args`` (a task whose model sets a
            backbone other than its family's default and the shared one is refused). The names must match the
            data's (the task names of ``MultiTaskData``).
        model: the shared backbone (:class:`SharedBackbone`, ``model.backbone``); always causal (each task picks its
            mask per call).
        loss_weights: task name → weight of its loss (default 1 each).
        optim: AdamW and schedule over every parameter, each shared one once.

    The model is built here, unless a task's model config leaves a size to its data
    (:func:`~mmformer.models.data_fields.unset_fields`): then it is built when the data is bound, from each task's
    ``complete_model_config(spec)`` (the config as given for a task without that method).
    """

    required_data: ClassVar[tuple[str, ...]] = ("tasks",)

    def __init__(self, tasks: dict[str, Callable[[], TaskModule]], model: SharedBackbone | None = None,
                 loss_weights: dict[str, float] | None = None, optim: OptimConfig | None = None) -> None:
        super().__init__()
        if not tasks:
            raise ValueError("MultiTaskTask needs at least one task (tasks: {name: task module})")
        for name in tasks:
            if "/" in name or not name:
                raise ValueError(f"task names go into metric names: {name!r} must be non-empty without '/'")
        weights = dict(loss_weights or {})
        unknown = sorted(set(weights) - set(tasks))
        if unknown:
            raise ValueError(f"loss_weights name unknown tasks {unknown}; the tasks are {list(tasks)}")
        if any(not (w >= 0) for w in weights.values()) or (weights and sum(weights.get(n, 1.0) for n in tasks) <= 0):
            raise ValueError(f"loss_weights must be >= 0 and not all 0, got {weights}")
        self.loss_weights = {n: float(weights.get(n, 1.0)) for n in tasks}
        self.optim = optim or OptimConfig()
        given = (model or SharedBackbone()).backbone
        self.backbone_config = replace(given, causal=True)
        with composing():  # the tasks record their model configs; the weights are drawn below, all at once
            children = {name: _create(name, make, given) for name, make in tasks.items()}
        self.model_config: MultiTaskConfig | None = None
        self.register_module("model", None)  # its place in the state_dict, ahead of the tasks, even if built later
        if not any(unset_fields(child.model_config) for child in children.values()):  # type: ignore[arg-type]
            self._build({name: child.model_config for name, child in children.items()}, children)  # type: ignore[misc]
        self.tasks = nn.ModuleDict(children)  # metrics and buffers of each child (e.g. return statistics)

    def _build(self, configs: dict[str, ModelConfig], children: Mapping[str, TaskModule]) -> None:
        """Builds the one model from the tasks' configs and gives each task its part and its logging function.
        The weights are drawn as the single tasks draw theirs: each task's model whole (its own backbone drawn,
        then replaced by the shared one), in the order of ``tasks``, then the shared backbone."""
        self.model_config = multitask_config(configs, self.backbone_config)
        self.model: MultiTaskModel = build(self.model_config)  # type: ignore[assignment]
        for name, child in children.items():
            child.model_config = configs[name]  # complete now: what the child's on_model_built reads
            child.attach(TaskContext(name, self.model[name], functools.partial(self._log_for, name)))

    # ---- the trainer reaches every child (they read self.trainer, self.device, self.loggers) -------
    @property  # type: ignore[override]
    def trainer(self) -> pl.Trainer:
        return pl.LightningModule.trainer.fget(self)  # type: ignore[attr-defined]

    @trainer.setter
    def trainer(self, trainer: pl.Trainer | None) -> None:
        pl.LightningModule.trainer.fset(self, trainer)  # type: ignore[attr-defined]
        for child in getattr(self, "_modules", {}).get("tasks", {}).values():
            child.trainer = trainer

    def _log_for(self, task: str, name: str, value: Any, *args: Any, **kwargs: Any) -> None:
        kwargs["add_dataloader_idx"] = False  # the task is in the name
        self.log(task_metric_name(task, name), value, *args, **kwargs)

    @property
    def task_names(self) -> list[str]:
        return list(self.tasks.keys())

    # ---- data --------------------------------------------------------------------------------
    def bind_data(self, spec: DataSpec, stage: str) -> None:
        have = dict(spec.tasks or {})
        # predict runs the data's predict tasks only; every other stage needs data for every task
        missing = [] if stage == "predict" else [n for n in self.tasks if n not in have]
        extra = sorted(set(have) - set(self.tasks))
        if missing or extra:
            raise ValueError(f"the model's tasks {self.task_names} and the data's {list(have)} differ: "
                             f"{'no DataModule for ' + str(missing) if missing else ''}"
                             f"{'; ' if missing and extra else ''}{'no task for data ' + str(extra) if extra else ''}; "
                             f"name every task the same in the model's tasks and the data's DataModules")
        for name, child in self.tasks.items():
            if name in have:
                have[name].require(child.required_data_for(stage), f"the data of task {name!r}", type(child).__name__)
        if self.model is None:
            try:
                configs = {name: self._completed_config(name, have.get(name)) for name in self.tasks}
            except ValueError:
                if stage == "fit":
                    raise
                self._unbound = (have, stage)  # predict of some tasks: the checkpoint's config sizes the rest
                return
            self._build(configs, self.tasks)
        self._bind_children(have, stage)

    def _bind_children(self, have: Mapping[str, DataSpec], stage: str) -> None:
        for name, child in self.tasks.items():
            if name in have:
                child.bind_data(have[name], stage)

    # ---- built from the data in bind_data, or from a checkpoint's stored config ----------------
    def model_pending(self) -> bool:
        return self._modules.get("model") is None

    def build_from_data(self, spec: DataSpec, stage: str, provider: str) -> None:
        """Nothing here: :meth:`bind_data` builds from every task's data."""

    def build_from_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Builds the model with the sizes each task's data gave in training (the checkpoint's stored config),
        then binds the tasks whose data this run has."""
        stored = checkpoint.get(MODEL_CONFIG_KEY)
        if not isinstance(stored, dict):
            raise ValueError("this checkpoint stores no model config, and the run's data does not size every task: "
                             "run with every task's data")
        built = config_from_dict(stored)
        if not isinstance(built, MultiTaskConfig) or set(built.models) != set(self.tasks):
            raise ValueError(f"the checkpoint's model is not a multi-task model of the tasks {self.task_names}")
        self._build({name: fill_unset(self.tasks[name].model_config, built.models[name]) for name in self.tasks},
                    self.tasks)
        unbound = self.__dict__.pop("_unbound", None)
        if unbound is not None:
            self._bind_children(*unbound)

    def _completed_config(self, name: str, spec: DataSpec | None) -> ModelConfig:
        """Task ``name``'s model config with the sizes its data gives (``complete_model_config``, when it has one)."""
        child = self.tasks[name]
        complete = getattr(child, "complete_model_config", None)
        cfg = complete(spec) if spec is not None and callable(complete) else child.model_config
        missing = unset_fields(cfg)
        if missing:
            raise ValueError(f"task {name!r} leaves {missing} of its model to its data, but "
                             f"{'its data gives none' if spec is None else 'its data did not give them'}; set them "
                             f"in model.init_args.tasks.{name}.init_args.model, or run with that task's data")
        return cfg

    def _task_of(self, dataloader_idx: int) -> str:
        """The task of an evaluation loader: loaders run in the order of the data's dict (sequential mode)."""
        stage = self.trainer.state.stage
        loaders = {RunningStage.TESTING: "test_dataloaders", RunningStage.PREDICTING: "predict_dataloaders"}
        by_task = getattr(self.trainer, loaders.get(stage, "val_dataloaders"))
        if not isinstance(by_task, Mapping):
            raise TypeError(f"MultiTaskTask evaluates one loader per task, by task name (MultiTaskData), got "
                            f"{type(by_task).__name__}")
        return list(by_task)[dataloader_idx]

    def on_before_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        if self.trainer.state.stage == RunningStage.TRAINING:
            return {n: self.tasks[n].on_before_batch_transfer(b, dataloader_idx) for n, b in batch.items()}
        return self.tasks[self._task_of(dataloader_idx)].on_before_batch_transfer(batch, dataloader_idx)

    # ---- steps -------------------------------------------------------------------------------
    def training_step(self, batch: dict[str, Any], batch_idx: int) -> Tensor:
        unknown = sorted(set(batch) - set(self.tasks))
        if unknown:
            raise KeyError(f"training batch for unknown tasks {unknown}; the tasks are {self.task_names}")
        losses = [self.loss_weights[n] * self.tasks[n].training_step(b, batch_idx) for n, b in batch.items()]
        loss = torch.stack(losses).sum()
        self.log("train/loss", loss, prog_bar=True)
        if self.trainer.world_size > 1:
            loss = loss + 0.0 * self._touch_every_parameter()
        return loss

    def _touch_every_parameter(self) -> Tensor:
        """A zero term that reaches every trainable parameter. A step trains one task, so the other tasks'
        tokenizers and heads get no gradient, and DDP's reducer would stop (or need ``find_unused_parameters``,
        which walks the graph each step): with this term every parameter gets a gradient, zero where unused,
        and plain ``strategy: ddp`` works. One element per parameter tensor: ~a hundred tiny ops per step."""
        return torch.stack([p.reshape(-1)[0] for p in self.parameters() if p.requires_grad]).sum()

    def validation_step(self, batch: Any, batch_idx: int, dataloader_idx: int = 0) -> None:
        self.tasks[self._task_of(dataloader_idx)].validation_step(batch, batch_idx)

    def test_step(self, batch: Any, batch_idx: int, dataloader_idx: int = 0) -> None:
        self.tasks[self._task_of(dataloader_idx)].test_step(batch, batch_idx)

    def predict_step(self, batch: Any, batch_idx: int, dataloader_idx: int = 0) -> Any:
        return self.tasks[self._task_of(dataloader_idx)].predict_step(batch, batch_idx)

    def _evaluated(self, attr: str) -> list[str]:
        return [n for n in getattr(self.trainer, attr) if n in self.tasks]

    def on_validation_epoch_end(self) -> None:
        for name in self._evaluated("val_dataloaders"):
            self.tasks[name].on_validation_epoch_end()

    def on_test_epoch_end(self) -> None:
        for name in self._evaluated("test_dataloaders"):
            self.tasks[name].on_test_epoch_end()

    def on_predict_epoch_end(self) -> None:
        for name in self._evaluated("predict_dataloaders"):
            self.tasks[name].on_predict_epoch_end()

    # ---- checkpoints: what each child keeps beside its weights, under its name ------------------
    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        super().on_save_checkpoint(checkpoint)
        kept = {}
        for name, child in self.tasks.items():
            own: dict[str, Any] = {}
            child.on_save_checkpoint(own)
            kept[name] = {k: v for k, v in own.items() if k not in _BASE_KEYS}
        checkpoint[TASKS_KEY] = kept

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        super().on_load_checkpoint(checkpoint)
        state = checkpoint.get("state_dict", {})
        for name, own in checkpoint.get(TASKS_KEY, {}).items():
            if name not in self.tasks:
                continue  # check_fits above named the difference already
            prefix = f"tasks.{name}."
            child_state = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
            # under FSDP the strategy has loaded the weights already and removed them from the checkpoint
            self.tasks[name].on_load_checkpoint({**own, "state_dict": child_state} if "state_dict" in checkpoint
                                                else dict(own))

    def configure_optimizers(self) -> dict:
        return build_optimizer(self, self.optim, self.trainer.estimated_stepping_batches)


__all__ = ["MultiTaskTask", "SharedBackbone", "task_metric_name"]

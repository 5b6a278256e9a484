"""One model, several tasks, one checkpoint: existing task modules (classification, prefix LMs for translation
and speech, a decision transformer...) composed around a single shared causal backbone
(:class:`~mmformer.models.multitask.MultiTaskModel`).

Each child is the ordinary task module, built from YAML by its ``class_path``; the children keep their own
tokenizers, heads, losses, metrics and evaluation, and this module routes to them: a training batch
``{task: batch}`` (:class:`~mmformer.data.modules.multitask.MultiTaskData`) runs that task's
``training_step`` with loss ``Σ_t loss_weight_t · loss_t``; evaluation batches come one task's loader
after another and ``dataloader_idx`` names the task. Every name a child logs gets the task inserted:
``train/loss`` → ``train/<task>/loss``, ``test/acc`` → ``test/<task>/acc``.
"""

from __future__ import annotations

import copy
from dataclasses import replace
from functools import partial
from typing import Any, ClassVar, Mapping

import pytorch_lightning as pl
import torch
from pytorch_lightning.trainer.states import RunningStage
from torch import Tensor, nn

from mmformer.backbone import BackboneConfig, Encoder
from mmformer.data.spec import DataSpec
from mmformer.models.config import MultiTaskConfig, multitask_config
from mmformer.models.multitask import MultiTaskModel
from mmformer.tasks.base import TaskModule
from mmformer.tasks.optim import OptimConfig, build_optimizer

TASKS_KEY = "mmformer_tasks"  # checkpoint entry: {task: what that child keeps beside its weights}
_BASE_KEYS = ("mmformer_rng", "mmformer_task", "mmformer_lora")  # the parent's own copies serve


def task_metric_name(task: str, name: str) -> str:
    """``train/loss`` → ``train/<task>/loss``; a name without a stage gets the task in front."""
    stage, sep, rest = name.partition("/")
    return f"{stage}/{task}/{rest}" if sep else f"{task}/{name}"


class MultiTaskTask(TaskModule):
    """Several task modules trained as one model over one shared backbone.

    Args:
        tasks: task name → task module (in YAML a ``class_path`` each, with its usual ``init_args``). Their
            backbones are replaced by the shared one; built through the CLI, each child's ``backbone`` is set
            to this module's ``backbone`` first (see :meth:`complete_init_args`), so its tokenizers and heads
            have the shared width. The names must match the data's (the task names of ``MultiTaskData``).
        backbone: the shared stack; always causal (each task picks its mask per call).
        loss_weights: task name → weight of its loss (default 1 each).
        optim: AdamW and schedule over every parameter, each shared one once.
    """

    required_data: ClassVar[tuple[str, ...]] = ("tasks",)

    def __init__(self, tasks: dict[str, TaskModule], backbone: BackboneConfig | None = None,
                 loss_weights: dict[str, float] | None = None, optim: OptimConfig | None = None) -> None:
        super().__init__()
        if not tasks:
            raise ValueError("MultiTaskTask needs at least one task (tasks: {name: task module})")
        for name, child in tasks.items():
            if not isinstance(child, TaskModule) or not isinstance(getattr(child, "model", None), nn.Module):
                raise TypeError(f"task {name!r} is {type(child).__name__}, not an mmformer TaskModule with a .model")
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
        cfg = replace(backbone or BackboneConfig(), causal=True)
        models = {}
        for name, child in tasks.items():
            # The weights live once, in self.model; the child keeps a plain reference for its own code.
            models[name] = child._modules.pop("model")
            object.__setattr__(child, "model", models[name])
            child.log = partial(self._log_for, name)  # type: ignore[method-assign]
        # the children's models are built already (each by its task): composed here as build(MultiTaskConfig) does
        self.model = MultiTaskModel(Encoder(cfg), models)
        configs = {name: getattr(child, "model_config", None) for name, child in tasks.items()}
        self.model_config: MultiTaskConfig | None = (  # None: a child task without a model config (a plug-in)
            multitask_config(configs, cfg) if all(c is not None for c in configs.values()) else None)
        self.tasks = nn.ModuleDict(tasks)  # metrics and buffers of each child (e.g. return statistics)

    @staticmethod
    def complete_init_args(init_args: Any) -> None:
        """Called by the CLI before building: every child task gets the shared ``backbone`` config, so its
        tokenizers and heads are built at the shared width (one place to size the model, presets included)."""
        backbone = init_args.get("backbone") if hasattr(init_args, "get") else None
        for child in (init_args.get("tasks") or {}).values():
            args = child.get("init_args") if hasattr(child, "get") else None
            if args is not None and backbone is not None:
                args["backbone"] = copy.deepcopy(backbone)

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
            if name not in have:
                continue
            child_spec = have[name]
            child_spec.require(child.required_data_for(stage), f"the data of task {name!r}", type(child).__name__)
            child.bind_data(child_spec, stage)

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


__all__ = ["MultiTaskTask", "task_metric_name"]

"""How a task module runs inside a composite (:class:`~mmformer.tasks.multitask.MultiTaskTask`) with no
surgery on it: the composite creates the task inside :func:`composing`, so the task records its model config
and builds no weights; the composite builds every task's model as one (``build(MultiTaskConfig)``, one shared
backbone) and hands each task its part and a logging function with :meth:`Composable.attach`.

A task reads its model as ``self.model`` and logs with ``self.log`` either way: alone, the model is its own
submodule (saved as ``model.*``) and ``log`` is Lightning's; composed, ``self.model`` is the composite's part
(owned and saved once, by the composite) and ``log`` reports through the composite, which puts the task's name
into the metric's.
"""

from __future__ import annotations

from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any, Callable, Iterator

from torch import nn

from mmformer.models.builders import build
from mmformer.models.config import ModelConfig

_COMPOSING: ContextVar[bool] = ContextVar("mmformer_composing", default=False)


@contextmanager
def composing() -> Iterator[None]:
    """Task modules created inside this block build no model (:meth:`Composable.build_model` records the
    config only): the composite that creates them builds all their models at once."""
    token = _COMPOSING.set(True)
    try:
        yield
    finally:
        _COMPOSING.reset(token)


@dataclass(frozen=True)
class TaskContext:
    """What a composite gives a task it runs: its name, its model and where its metrics go."""

    name: str  # the task's name in the composite (in its metric names and the data's task names)
    model: nn.Module  # the task's model: a part of the composite's model, sharing its backbone
    log: Callable[..., None]  # ``log(name, value, **lightning_log_kwargs)``: the composite's, under the task's name


class Composable:
    """Mixed into :class:`~mmformer.tasks.base.TaskModule` (before ``LightningModule``): the model built from its
    config unless the task is being composed, and ``model`` and ``log`` from the composite once attached."""

    model_config: ModelConfig | None

    def build_model(self, cfg: ModelConfig) -> None:
        """Records ``cfg`` as ``model_config`` and builds ``self.model`` from it (its weights drawn now from torch's
        global generator), except inside :func:`composing` or once attached, where the composite builds it."""
        self.model_config = cfg
        if not _COMPOSING.get() and self.task_context is None:
            self.model = build(cfg)
            self.on_model_built()

    def on_model_built(self) -> None:
        """Called once the task's model exists (see :class:`~mmformer.tasks.base.TaskModule`)."""

    @property
    def task_context(self) -> TaskContext | None:
        """The composite this task runs in (None: the task runs alone)."""
        return self.__dict__.get("_task_context")

    def attach(self, context: TaskContext) -> None:
        """Runs this task inside a composite: ``self.model`` is ``context.model`` (not registered here, so its
        weights are saved once, by the composite) and ``self.log`` reports through ``context.log``."""
        if isinstance(self, nn.Module) and self._modules.get("model") is not None:
            raise RuntimeError(f"task {context.name!r} ({type(self).__name__}) built a model of its own; a task in a "
                               f"composite is created inside mmformer.tasks.composition.composing() and builds its "
                               f"model with self.build_model(config), so that the composite builds it")
        if self.task_context is not None:
            raise RuntimeError(f"task {context.name!r} runs in a composite already (as {self.task_context.name!r})")
        self._task_context = context  # a plain value (no submodule): the composite owns and saves the model
        if isinstance(self, nn.Module):
            self._modules.pop("model", None)  # the placeholder, so that `self.model` reads the context's
        self.on_model_built()

    def __getattr__(self, name: str) -> Any:
        # Reached only when normal lookup fails: a composed task has no `model` of its own, so it reads its
        # context's (torch.nn.Module.__getattr__ finds the submodules of a task that runs alone).
        context = self.__dict__.get("_task_context")
        if name == "model" and context is not None:
            return context.model
        return super().__getattr__(name)  # type: ignore[misc]

    def log(self, name: str, value: Any, *args: Any, **kwargs: Any) -> None:
        context = self.task_context
        if context is not None:
            context.log(name, value, *args, **kwargs)
        else:
            super().log(name, value, *args, **kwargs)  # type: ignore[misc]


__all__ = ["Composable", "TaskContext", "composing"]

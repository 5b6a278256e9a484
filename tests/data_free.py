"""Building a recipe's model without its data, for tests that look at the architecture only: the sizes a recipe
leaves to its data (classes, vocabulary, control sizes) get stand-in values."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from mmformer.data.spec import ControlSpec, DataSpec
from mmformer.tasks.base import TaskModule


@dataclass
class StandInVocab:
    """What a model's size needs of a vocabulary: its size."""

    vocab_size: int = 128


def stand_in_spec(vocab_size: int = 128, num_classes: int = 10, state_dim: int = 4, act_dim: int = 2,
                  discrete: bool = True, context: int = 20) -> DataSpec:
    control = ControlSpec(env_id="CartPole-v1", context=context, state_dim=state_dim, act_dim=act_dim,
                          discrete=discrete, state_mean=torch.zeros(state_dim), state_std=torch.ones(state_dim),
                          ref_returns=(0.0, 1.0), dataset_returns=torch.zeros(1))
    return DataSpec(class_names=[str(i) for i in range(num_classes)], vocab=StandInVocab(vocab_size),  # type: ignore[arg-type]
                    control=control)


def build_without_data(task: TaskModule, **sizes: int) -> TaskModule:
    """``task`` with its model built, stand-in sizes filling what it leaves to its data."""
    from mmformer.tasks.multitask import MultiTaskTask

    if isinstance(task, MultiTaskTask):  # each task's sizes from a stand-in of its own data
        if task.model is None:
            task._build({name: task._completed_config(name, stand_in_spec(**sizes)) for name in task.tasks},
                        task.tasks)
    elif task.model_pending():
        task.build_model(task.complete_model_config(stand_in_spec(**sizes), "stand-in data"))
    return task

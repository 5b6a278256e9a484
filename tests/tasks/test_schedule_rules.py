"""Schedule warnings when the optimizer is built: warm-up of half the schedule or more, and a schedule
ending before half an epoch of the data; quiet for a schedule that fits."""

from __future__ import annotations

import warnings

import pytest
from torch import nn

from mmformer.tasks.optim import OptimConfig, build_optimizer, epoch_steps, schedule_warnings


def test_a_warm_up_of_half_the_schedule_is_warned_about() -> None:
    with pytest.warns(UserWarning, match=r"the warm-up \(400 steps\) is 80% of the schedule's 500 steps.*~25-50\)"):
        build_optimizer(nn.Linear(2, 2), OptimConfig(warmup_steps=400), 500)
    assert schedule_warnings(1000, 499) == [] and len(schedule_warnings(1000, 500)) == 1


def test_a_schedule_shorter_than_half_an_epoch_is_warned_about() -> None:
    with pytest.warns(UserWarning, match=r"ends after 100 optimizer steps, 0.25 of one epoch of this training data "
                                         r"\(400 steps\).*max_steps >= 400"):
        build_optimizer(nn.Linear(2, 2), OptimConfig(), 100, steps_per_epoch=400)
    assert schedule_warnings(200, 10, 400) == [] and schedule_warnings(100, 5, None) == []


def test_a_schedule_that_fits_builds_silently() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        build_optimizer(nn.Linear(2, 2), OptimConfig(warmup_steps=400), 2800, steps_per_epoch=1210)  # translation


class _Trainer:
    def __init__(self, batches: float, accumulate: int) -> None:
        self.num_training_batches, self.accumulate_grad_batches = batches, accumulate


def test_epoch_steps_counts_optimizer_steps_and_is_none_when_unknown() -> None:
    assert epoch_steps(_Trainer(100, 4)) == 25
    assert epoch_steps(_Trainer(float("inf"), 1)) is None and epoch_steps(object()) is None

"""MultiTaskData: task shares by sampling mode, a seeded schedule whose draws match the shares, exact resume
(an interrupted run continues with the same tasks *and* batches as an uninterrupted one, across the
children's epoch ends, whether a child can restart mid-epoch or not), sequential evaluation loaders, errors."""

from __future__ import annotations

import math
from types import SimpleNamespace
from typing import Any

import pytest
import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, Dataset

from mmformer.data.common.sampling import ResumableDataModule, ResumableSampler
from mmformer.data.modules.multitask import MultiTaskData, TaskSchedule, task_probabilities
from mmformer.data.spec import DataSpec, ProvidesDataSpec


class _Virtual(Dataset):
    """Sample ``v`` is ``{"x": v}``: the virtual index tells epoch and position apart."""

    def __init__(self, n: int) -> None:
        self.n = n

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, v: int) -> dict[str, torch.Tensor]:
        return {"x": torch.tensor(v)}


class _Resumable(ResumableDataModule, ProvidesDataSpec):
    def __init__(self, n: int, batch_size: int, seed: int) -> None:
        super().__init__()
        self.n, self.batch_size, self.seed = n, batch_size, seed

    def train_dataloader(self) -> DataLoader:
        sampler = ResumableSampler(self.n, self.seed)
        if self._resume is not None:
            sampler.resume_at(*self._resume)
        return DataLoader(_Virtual(self.n), batch_size=self.batch_size, sampler=sampler)

    def val_dataloader(self) -> DataLoader:
        return DataLoader(_Virtual(self.n), batch_size=self.batch_size)

    def data_spec(self) -> DataSpec:
        return DataSpec(class_names=[str(self.n)])


class _Plain(pl.LightningDataModule):
    """A user's DataModule: no mid-epoch restart (its order still depends on the epoch only)."""

    def __init__(self, n: int) -> None:
        super().__init__()
        self.n = n

    def train_dataloader(self) -> DataLoader:
        sampler = ResumableSampler(self.n, seed=7)
        return DataLoader(_Virtual(self.n), batch_size=2, sampler=sampler)


def _data(**kw: Any) -> MultiTaskData:
    dms = {"a": _Resumable(10, 3, 0), "b": _Resumable(7, 2, 1), "c": _Plain(5)}
    return MultiTaskData(dms, **{"sampling": "fixed", "weights": {"a": 0.5, "b": 0.3, "c": 0.2}, **kw})


def _as_list(batch: dict[str, Any]) -> tuple[str, list[int]]:
    (name, b), = batch.items()
    return name, b["x"].tolist()


def test_shares_by_sampling_mode() -> None:
    sizes = {"a": 100, "b": 25}
    assert task_probabilities(sizes, "proportional") == pytest.approx({"a": 0.8, "b": 0.2})
    assert task_probabilities(sizes, "temperature", temperature=2.0) == pytest.approx({"a": 10 / 15, "b": 5 / 15})
    assert task_probabilities(sizes, "fixed", {"a": 1, "b": 3}) == pytest.approx({"a": 0.25, "b": 0.75})
    assert task_probabilities(sizes, "proportional", {"b": 4}) == pytest.approx({"a": 0.5, "b": 0.5})


@pytest.mark.parametrize(("kw", "match"), [
    ({"weights": {"a": 1, "zz": 1}}, r"unknown tasks \['zz'\]"),
    ({"weights": {"a": -1, "b": 1}}, "finite and >= 0"),
    ({"weights": {"a": 0, "b": 0}, "sampling": "fixed"}, "every task has sampling weight 0"),
    ({"weights": {"a": 1}, "sampling": "fixed"}, r"weight for every task; missing \['b'\]"),
    ({"sampling": "uniform"}, "sampling must be"),
    ({"sampling": "temperature", "temperature": 0.0}, "temperature must be > 0"),
])
def test_bad_weights_are_clear_errors(kw: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        task_probabilities({"a": 10, "b": 10}, **kw)
    with pytest.raises(ValueError, match=match):  # the DataModule says so when it is built
        MultiTaskData({"a": _Plain(3), "b": _Plain(3)}, **kw)


def test_data_errors() -> None:
    with pytest.raises(ValueError, match="at least one DataModule"):
        MultiTaskData({})
    with pytest.raises(ValueError, match=r"predict_tasks names unknown tasks \['x'\]"):
        MultiTaskData({"a": _Plain(3)}, predict_tasks=["x"])
    with pytest.raises(RuntimeError, match="train_dataloader"):
        MultiTaskData({"a": _Plain(3)}).draw()


def test_schedule_draws_match_the_shares_and_depend_on_seed_and_step_only() -> None:
    probs = {"a": 0.6, "b": 0.3, "c": 0.1}
    n = 20_000
    seq = TaskSchedule(probs, seed=3).sequence(0, n)
    for name, p in probs.items():
        share = seq.count(name) / n
        assert abs(share - p) < 4 * math.sqrt(p * (1 - p) / n), (name, share)
    later = TaskSchedule(probs, seed=3)  # a fresh schedule asked mid-way gives the same tasks
    assert later.sequence(12_000, 12_100) == seq[12_000:12_100]
    assert TaskSchedule(probs, seed=4).sequence(0, 200) != seq[:200]


def test_training_batches_are_one_task_per_step_and_epochs_have_the_given_length() -> None:
    data = _data(epoch_steps=8)
    loader = data.train_dataloader()
    assert len(loader) == 8
    first = list(loader)
    assert len(first) == 8 and all(len(b) == 1 for b in first)
    assert len(list(loader)) == 8 and data.step == 16  # the next epoch continues the schedule
    assert [next(iter(b)) for b in first] == data.schedule.sequence(0, 8)


def _loop(ready: int = 0) -> SimpleNamespace:
    """A trainer as MultiTaskData sees it: the fit loop's count of batches taken in the current epoch."""
    return SimpleNamespace(fit_loop=SimpleNamespace(epoch_loop=SimpleNamespace(
        batch_progress=SimpleNamespace(current=SimpleNamespace(ready=ready)))))


def _take(data: MultiTaskData, n: int) -> list[tuple[str, list[int]]]:
    """``n`` training batches taken as Lightning's loop takes them: epoch by epoch, counting each."""
    mixed, out = data.train_dataloader(), []
    current = data.trainer.fit_loop.epoch_loop.batch_progress.current
    while len(out) < n:
        for batch in mixed:
            out.append(_as_list(batch))
            current.ready += 1
            if len(out) == n:
                return out
        current.ready = 0  # the next epoch
    return out


def test_an_interrupted_run_resumes_with_the_same_tasks_and_batches() -> None:
    total, stop = 60, 23  # children a, b, c run through several of their epochs (4, 4 and 3 batches each)
    full = _data()
    full.train_dataloader()
    expected = [_as_list(full.draw()) for _ in range(total)]

    first = _data()
    first.trainer = _loop()
    got = _take(first, stop)
    first.draw()  # a fetcher that prefetched one more batch before the checkpoint was written
    state = first.state_dict()
    assert state["step"] == stop

    resumed = _data()  # a new process: fresh DataModules, then Lightning restores the state
    resumed.load_state_dict(state)
    resumed.trainer = _loop(ready=stop % 11)  # and its loop's place in the 11-batch epoch
    got += _take(resumed, total - stop)
    assert got == expected
    assert len({name for name, _ in expected}) == 3


def test_evaluation_loaders_run_one_task_after_another() -> None:
    data = _data()
    combined = data.val_dataloader()
    assert list(combined.iterables) == ["a", "b"]  # the plain module has no validation loader
    seen = [idx for _, _, idx in combined]
    assert seen == [0] * 4 + [1] * 4
    spec = data.data_spec()
    assert list(spec.tasks) == ["a", "b", "c"] and spec.tasks["a"].class_names == ["10"]
    assert spec.tasks["c"] == DataSpec()


def test_one_tasks_validation_loader_alone_after_setting_it_up() -> None:
    """``val_dataloader_of``: choosing one task's decoding on validation runs that task's loader only, set up for
    validation first (a child set up for ``test`` may hold only its test split); an unknown task is named."""
    data = _data()
    stages: list[str] = []
    data.datamodules["b"].setup = stages.append  # type: ignore[method-assign]
    combined = data.val_dataloader_of(["b"])
    assert list(combined.iterables) == ["b"] and stages == ["validate"]
    assert [idx for _, _, idx in combined] == [0] * 4
    with pytest.raises(ValueError, match=r"no DataModule for tasks \['z'\]; the data's tasks are \['a', 'b', 'c'\]"):
        data.val_dataloader_of(["z"])


class _WithWorkers(_Resumable):
    def train_dataloader(self) -> DataLoader:
        loader = super().train_dataloader()
        return DataLoader(loader.dataset, batch_size=self.batch_size, sampler=loader.sampler, num_workers=1,
                          persistent_workers=True)


@pytest.mark.slow  # spawns a DataLoader worker
def test_teardown_after_fit_ends_the_children_loader_workers_and_keeps_their_places() -> None:
    data = MultiTaskData({"a": _WithWorkers(10, 3, 0), "b": _Resumable(7, 2, 1)}, sampling="fixed",
                         weights={"a": 1.0, "b": 0.0})
    data.train_dataloader()
    drawn = [_as_list(data.draw()) for _ in range(2)]
    workers = list(data._streams["a"].it._workers)  # type: ignore[union-attr]
    assert workers and all(w.is_alive() for w in workers)
    data.teardown("fit")
    assert not any(w.is_alive() for w in workers), "left to garbage collection, workers linger"
    data.train_dataloader()  # a later fit continues where this one stopped
    again = _data(sampling="fixed", weights={"a": 1.0, "b": 0.0, "c": 0.0})
    again.train_dataloader()
    assert drawn + [_as_list(data.draw())] == [_as_list(again.draw()) for _ in range(3)]

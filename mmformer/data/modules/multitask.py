"""Several DataModules as one: training draws one task per step with a seeded schedule, evaluation runs
every task's loaders one after another (Lightning's ``CombinedLoader``, mode ``sequential``).

Training batches are ``{task_name: batch}`` with exactly one task: one task per step keeps the peak
memory of the largest single task (a step over all tasks at once would hold every task's activations)
and lets each task keep its own batch size. The task of global step ``s`` is a pure function of
``(seed, s)`` (:class:`TaskSchedule`), so an interrupted run needs only the step and each task's place in
its own epoch to continue exactly: both are in :meth:`MultiTaskData.state_dict`, which Lightning stores in
every checkpoint. Each child loader keeps its own order (its samplers depend on (seed, epoch) only) and
is restarted mid-epoch through its ``ResumableDataModule`` position, or else by skipping batches.
"""

from __future__ import annotations

import math
from typing import Any, Iterator, Literal, Mapping

import pytorch_lightning as pl
import torch
from lightning_fabric.utilities.data import _set_sampler_epoch
from pytorch_lightning.utilities import CombinedLoader
from pytorch_lightning.utilities.model_helpers import is_overridden

from mmformer.data.common.sampling import ResumableDataModule
from mmformer.data.spec import DataSpec, ProvidesDataSpec

Sampling = Literal["proportional", "temperature", "fixed"]
BLOCK = 4096  # steps drawn per seeded block of the schedule


def task_probabilities(sizes: Mapping[str, int], sampling: Sampling = "proportional",
                       weights: Mapping[str, float] | None = None, temperature: float = 2.0) -> dict[str, float]:
    """Each task's share of the training steps.

    ``fixed``: ``p ∝ weights`` (every task named); ``proportional``: ``p ∝ size``; ``temperature``:
    ``p ∝ size^(1/T)`` (T > 1 flattens towards uniform; Arivazhagan et al. 2019). ``size`` is a task's
    training batches per epoch, so proportional sampling runs through every task's epoch at the same pace.
    In the last two modes ``weights`` (default 1) multiply the sizes' shares.
    """
    names = list(sizes)
    if sampling not in ("proportional", "temperature", "fixed"):
        raise ValueError(f"sampling must be 'proportional', 'temperature' or 'fixed', got {sampling!r}")
    weights = dict(weights or {})
    unknown = sorted(set(weights) - set(names))
    if unknown:
        raise ValueError(f"sampling weights name unknown tasks {unknown}; the tasks are {names}")
    bad = {k: w for k, w in weights.items() if not (isinstance(w, (int, float)) and math.isfinite(w) and w >= 0)}
    if bad:
        raise ValueError(f"sampling weights must be finite and >= 0, got {bad}")
    if sampling == "fixed":
        missing = [n for n in names if n not in weights]
        if missing:
            raise ValueError(f"sampling 'fixed' needs a weight for every task; missing {missing}")
        raw = {n: float(weights[n]) for n in names}
    else:
        if temperature <= 0:
            raise ValueError(f"temperature must be > 0, got {temperature}")
        power = 1.0 if sampling == "proportional" else 1.0 / temperature
        raw = {n: float(sizes[n]) ** power * float(weights.get(n, 1.0)) for n in names}
    total = sum(raw.values())
    if total <= 0:
        raise ValueError(f"every task has sampling weight 0 ({raw}); give at least one task a positive weight")
    return {n: w / total for n, w in raw.items()}


class TaskSchedule:
    """The task of every training step: block ``b`` of ``BLOCK`` steps is drawn i.i.d. from ``probs`` with a
    generator seeded by ``(seed, b)``, so step ``s``'s task depends on ``(seed, s)`` only (no state to save)."""

    def __init__(self, probs: Mapping[str, float], seed: int = 0) -> None:
        self.names = list(probs)
        self.probs = torch.tensor([probs[n] for n in self.names], dtype=torch.float64)
        self.seed = seed
        self._block: tuple[int, torch.Tensor] | None = None

    def _draws(self, block: int) -> torch.Tensor:
        if self._block is None or self._block[0] != block:
            g = torch.Generator().manual_seed(self.seed * 1_000_003 + block)
            self._block = (block, torch.multinomial(self.probs, BLOCK, replacement=True, generator=g))
        return self._block[1]

    def task_at(self, step: int) -> str:
        return self.names[int(self._draws(step // BLOCK)[step % BLOCK])]

    def sequence(self, start: int, stop: int) -> list[str]:
        return [self.task_at(s) for s in range(start, stop)]


class _TaskStream:
    """One task's training batches across its epochs, from a place ``(epoch, batches done)``."""

    def __init__(self, dm: pl.LightningDataModule, epoch: int, done: int) -> None:
        self.dm, self.epoch, self.done = dm, epoch, done
        self.loader: Any = None
        self.it: Iterator[Any] | None = None
        self.size = 0

    def _open(self) -> None:
        skip = self.done
        if self.loader is None:
            resumable = isinstance(self.dm, ResumableDataModule)
            if resumable and self.done:  # the child's sampler starts mid-epoch
                unit = 1 if self.dm._resume_unit == "batches" else self.dm.batch_size
                self.dm._resume, skip = (self.epoch, self.done * unit), 0
            self.loader = self.dm.train_dataloader()
            if resumable:
                self.dm._resume = None
        _set_sampler_epoch(self.loader, self.epoch)
        self.it = iter(self.loader)
        for _ in range(skip):  # a child that cannot start mid-epoch: skip what was trained on
            next(self.it)

    def close(self) -> None:
        """Ends the loader's worker processes now (left to garbage collection, they linger, and each takes the
        DataLoader's join timeout to go at some later, arbitrary point)."""
        shutdown = getattr(self.it, "_shutdown_workers", None)
        if shutdown is not None:
            shutdown()
        self.loader, self.it = None, None

    def next(self) -> Any:
        if self.it is None:
            self._open()
        try:
            batch = next(self.it)  # type: ignore[arg-type]
        except StopIteration:  # the child's epoch ended: its next one
            self.epoch, self.done = self.epoch + 1, 0
            self._open()
            batch = next(self.it)  # type: ignore[arg-type]
        self.done += 1
        return batch


class _MixedBatches:
    """The training iterable: ``{task: batch}`` per step, ``len`` steps an epoch, continuing the global step."""

    def __init__(self, data: MultiTaskData, steps: int) -> None:
        self.data, self.steps = data, steps

    def __len__(self) -> int:
        return self.steps

    def __iter__(self) -> Iterator[dict[str, Any]]:
        d = self.data
        end = (d.step // self.steps + 1) * self.steps  # stop at the epoch's end: no batch drawn past it
        d._mark_loop_start()
        while d.step < end:
            yield d.draw()


class MultiTaskData(pl.LightningDataModule, ProvidesDataSpec):
    """Training batches from several DataModules, one task per step, drawn with sampling weights.

    Args:
        datamodules: task name → its DataModule (the names must be the task module's task names).
        sampling: ``proportional`` to each task's training batches per epoch, ``temperature`` (sizes to the
            power ``1/temperature``), or ``fixed`` weights (see :func:`task_probabilities`).
        weights: task name → weight (``fixed``: the shares; otherwise multipliers, default 1).
        temperature: of ``temperature`` sampling.
        seed: of the task schedule (each child keeps its own data seed).
        epoch_steps: training steps per epoch (default: the sum of the children's training batches).
        predict_tasks: the tasks ``predict`` runs (default: every task).
    """

    def __init__(self, datamodules: dict[str, pl.LightningDataModule], sampling: Sampling = "proportional",
                 weights: dict[str, float] | None = None, temperature: float = 2.0, seed: int = 0,
                 epoch_steps: int | None = None, predict_tasks: list[str] | None = None) -> None:
        super().__init__()
        if not datamodules:
            raise ValueError("MultiTaskData needs at least one DataModule (datamodules: {task name: DataModule})")
        unknown = sorted(set(weights or {}) - set(datamodules))
        if unknown:  # checked now; the shares themselves need the training sizes (setup)
            raise ValueError(f"sampling weights name unknown tasks {unknown}; the tasks are {list(datamodules)}")
        task_probabilities(dict.fromkeys(datamodules, 1), sampling, weights, temperature)  # the other errors, early
        bad = sorted(set(predict_tasks or []) - set(datamodules))
        if bad:
            raise ValueError(f"predict_tasks names unknown tasks {bad}; the tasks are {list(datamodules)}")
        self.datamodules = dict(datamodules)
        self.sampling, self.weights, self.temperature, self.seed = sampling, weights, temperature, seed
        self.epoch_steps, self.predict_tasks = epoch_steps, predict_tasks
        self.step = 0  # training batches drawn so far (global)
        self.probs: dict[str, float] | None = None
        self.schedule: TaskSchedule | None = None
        self._places: dict[str, tuple[int, int]] = {n: (0, 0) for n in datamodules}  # (epoch, batches done)
        self._streams: dict[str, _TaskStream] = {}
        self._snapshots: dict[int, dict[str, tuple[int, int]]] = {}  # step → places before drawing it
        self._set_up: list[str] = list(datamodules)  # the children the last setup() prepared
        self._loop_start: tuple[int, int] | None = None  # (self.step, the fit loop's batches) at an iterator's start

    @property
    def task_names(self) -> list[str]:
        return list(self.datamodules)

    # ---- Lightning hooks, forwarded to every child ---------------------------------------------
    def prepare_data(self) -> None:
        for dm in self.datamodules.values():
            dm.prepare_data()

    def _staged(self, stage: str) -> list[str]:
        """The tasks a stage sets up: ``predict`` only ``predict_tasks`` (the others need no predict inputs)."""
        return (self.predict_tasks or self.task_names) if stage == "predict" else self.task_names

    def setup(self, stage: str) -> None:
        self._set_up = self._staged(stage)
        for name in self._set_up:
            dm = self.datamodules[name]
            dm.trainer = self.trainer  # DDP sharding and world size, as the child would see alone
            dm.setup(stage)

    def teardown(self, stage: str) -> None:
        if stage == "fit":  # the children's training loaders: their places stay, their workers go
            self._places.update({n: (s.epoch, s.done) for n, s in self._streams.items()})
            for stream in self._streams.values():
                stream.close()
            self._streams = {}
        for name in self._staged(stage):
            self.datamodules[name].teardown(stage)

    def data_spec(self) -> DataSpec:
        """``tasks``: the spec of each child set up for the stage, by task name (an empty one for a child that
        declares none); ``predict`` has only the ``predict_tasks``."""
        return DataSpec(tasks={n: dm.data_spec() if isinstance(dm, ProvidesDataSpec) else DataSpec()
                               for n, dm in self.datamodules.items() if n in self._set_up})

    # ---- training ----------------------------------------------------------------------------
    def _stream(self, name: str) -> _TaskStream:
        if name not in self._streams:
            self._streams[name] = _TaskStream(self.datamodules[name], *self._places[name])
        return self._streams[name]

    def train_dataloader(self) -> _MixedBatches:
        sizes = {}
        for name in self.datamodules:
            stream = self._stream(name)
            if stream.loader is None:
                stream._open()
            sizes[name] = len(stream.loader)
        self.probs = task_probabilities(sizes, self.sampling, self.weights, self.temperature)
        self.schedule = TaskSchedule(self.probs, self.seed)
        shares = ", ".join(f"{n} {p:.3f}" for n, p in self.probs.items())
        print(f"multi-task sampling ({self.sampling}): {shares}", flush=True)
        return _MixedBatches(self, self.epoch_steps or sum(sizes.values()))

    def draw(self) -> dict[str, Any]:
        """The next training batch ``{task: batch}`` (step ``self.step`` of the schedule)."""
        if self.schedule is None:
            raise RuntimeError("call train_dataloader() before drawing training batches")
        self._snapshots[self.step] = {n: (s.epoch, s.done) for n, s in self._streams.items()}
        for old in [s for s in self._snapshots if s < self.step - 64]:
            del self._snapshots[old]
        name = self.schedule.task_at(self.step)
        batch = self._stream(name).next()
        self.step += 1
        return {name: batch}

    def state_at(self, step: int) -> dict[str, Any]:
        """Where training stands after ``step`` batches: the step and each task's (epoch, batches done)."""
        places = self._snapshots.get(step)
        if places is None:
            if step != self.step:
                raise ValueError(f"no record of step {step} (drawn up to {self.step})")
            places = {n: (s.epoch, s.done) for n, s in self._streams.items()}
        full = {**self._places, **places}
        return {"step": step, "tasks": {n: {"epoch": e, "done": d} for n, (e, d) in full.items()}}

    def _loop_batches(self) -> int | None:
        """Batches the fit loop has taken in its current epoch (Lightning's batch progress), None without a trainer."""
        t = self.trainer
        return None if t is None else t.fit_loop.epoch_loop.batch_progress.current.ready

    def _mark_loop_start(self) -> None:
        """Called as an epoch's iterator starts: pairs ``self.step`` with the fit loop's count of batches taken."""
        taken = self._loop_batches()
        self._loop_start = None if taken is None else (self.step, taken)

    def taken(self) -> int:
        """Training batches the fit loop has taken so far (global): what a checkpoint resumes after.

        Counted from the loop's batch progress, not ``global_step * accumulate_grad_batches`` (an epoch's last,
        incomplete accumulation group steps too); ``self.step`` would do while no fetcher draws ahead.
        """
        taken = self._loop_batches()
        if self._loop_start is None or taken is None:
            return self.step
        step0, taken0 = self._loop_start
        return step0 + taken - taken0

    def state_dict(self) -> dict[str, Any]:
        if self.trainer is None or self.schedule is None:  # not fitting: nothing to resume
            return {}
        return self.state_at(self.taken())

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if not state:
            return
        unknown = sorted(set(state["tasks"]) - set(self.datamodules))
        if unknown:
            raise ValueError(f"the checkpoint's multi-task data has tasks {unknown} that this run does not")
        self.step = int(state["step"])
        self._places.update({n: (int(p["epoch"]), int(p["done"])) for n, p in state["tasks"].items()})
        self._streams, self._snapshots = {}, {}

    # ---- evaluation: every task's loader in turn -----------------------------------------------
    def _combined(self, hook: str, names: list[str]) -> CombinedLoader:
        loaders = {n: getattr(self.datamodules[n], hook)() for n in names
                   if is_overridden(hook, self.datamodules[n], pl.LightningDataModule)}
        return CombinedLoader(loaders, mode="sequential")

    def val_dataloader(self) -> CombinedLoader:
        return self._combined("val_dataloader", self.task_names)

    def val_dataloader_of(self, names: list[str]) -> CombinedLoader:
        """The validation loaders of ``names`` only, each child set up for validation first (a child set up for
        ``test`` may hold only its test split): for choosing a task's decoding on validation data."""
        unknown = sorted(set(names) - set(self.datamodules))
        if unknown:
            raise ValueError(f"no DataModule for tasks {unknown}; the data's tasks are {self.task_names}")
        for name in names:
            self.datamodules[name].setup("validate")
        return self._combined("val_dataloader", names)

    def test_dataloader(self) -> CombinedLoader:
        return self._combined("test_dataloader", self.task_names)

    def predict_dataloader(self) -> CombinedLoader:
        return self._combined("predict_dataloader", self.predict_tasks or self.task_names)


__all__ = ["MultiTaskData", "TaskSchedule", "task_probabilities"]

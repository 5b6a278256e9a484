"""The resume matrix: for every DataModule the recipes use, DataLoader workers 0 and 2, gradient accumulation
1 and 3 (which does not divide the 5-batch epochs), a run stopped inside epoch 1 and resumed trains exactly the
batches of the uninterrupted run, each with the same loss, through ``mmformer fit`` (the in-process CLI).

Workers 0 resumes from a checkpoint the uninterrupted run wrote at the stop step (as if killed right after
saving); workers 2 stops gracefully (a callback sets ``should_stop``; ``last.ckpt`` is written as it ends) and resumes from that.
The uninterrupted run (workers 0) is shared by both, so the workers-2 run before its stop must match it too:
the order does not depend on the workers.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.tasks.resume_harness import Case, Losses, assert_same_losses, fit
from tests.tasks.resume_cases import CASES

pytestmark = [pytest.mark.slow, pytest.mark.filterwarnings("ignore")]


@pytest.fixture(scope="module")
def data_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("resume_data")


_BASELINES: dict[tuple[str, int], tuple[Case, Losses]] = {}


def _baseline(name: str, accumulate: int, data_root: Path) -> tuple[Case, Losses]:
    """The uninterrupted run (workers 0) of ``name``, once per module, with a checkpoint at the stop step."""
    key = (name, accumulate)
    if key not in _BASELINES:
        case = CASES[name](data_root / name)
        stop, total = case.steps(accumulate)
        root = data_root / "runs" / f"{name}-acc{accumulate}-full"
        losses = fit(case, root, accumulate=accumulate, workers=0, max_steps=total, every=stop)
        epochs = [b.epoch for b in losses]
        assert epochs.count(0) == epochs.count(1) == case.epoch_batches and epochs[-1] == 2, epochs
        _BASELINES[key] = case, losses
    return _BASELINES[key]


@pytest.mark.parametrize("accumulate", [1, 3], ids=["acc1", "acc3"])
@pytest.mark.parametrize("workers", [0, 2], ids=["w0", "w2"])
@pytest.mark.parametrize("name", list(CASES))
def test_a_run_resumed_inside_epoch_1_trains_the_uninterrupted_batches_with_the_same_losses(
        name: str, workers: int, accumulate: int, data_root: Path) -> None:
    case, full = _baseline(name, accumulate, data_root)
    stop, total = case.steps(accumulate)
    where = f"{name}, workers {workers}, accumulate {accumulate}, stop at step {stop} of {total}"
    before = next(i for i, b in enumerate(full) if b.step == stop) + 1  # batches trained when step `stop` was taken
    assert full[before - 1].epoch == 1 and full[before].epoch == 1, f"{where}: the stop is not inside epoch 1"
    runs = data_root / "runs" / f"{name}-acc{accumulate}-w{workers}"
    if workers == 0:  # killed right after the uninterrupted run's checkpoint at the stop step
        ckpt = data_root / "runs" / f"{name}-acc{accumulate}-full" / "ckpt" / f"step={stop}.ckpt"
    else:  # stopped by a callback: last.ckpt is written as the run ends
        cut = fit(case, runs / "cut", accumulate=accumulate, workers=workers, max_steps=total, stop_at=stop)
        assert cut == full[:before], f"{where}: with workers the run before the stop differs"
        ckpt = runs / "cut" / "ckpt" / "last.ckpt"
    resumed = fit(case, runs / "resumed", accumulate=accumulate, workers=workers, max_steps=total, ckpt_path=str(ckpt))
    assert_same_losses(resumed, full, before, where)

"""TrajectoryData from ``mmformer prepare d4rl`` shards: the episodes, statistics and batches of the file."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from mmformer.data.modules.trajectories import TrajectoryData
from mmformer.data.shards.prepare import prepare
from tests.data.shards.common import assert_equal, epoch


def cartpole_npz(path: Path, episodes: int = 12) -> Path:
    """Episodes of random lengths, ending by terminal or timeout (the last one cut off), with reference scores."""
    rng = np.random.default_rng(0)
    lengths = rng.integers(3, 15, episodes)
    t = int(lengths.sum())
    ends = np.cumsum(lengths) - 1
    terminals, timeouts = np.zeros(t, bool), np.zeros(t, bool)
    terminals[ends[:-1:2]], timeouts[ends[1:-1:2]] = True, True
    np.savez(path, observations=rng.normal(size=(t, 4)).astype(np.float32), actions=rng.integers(0, 2, t),
             rewards=rng.uniform(0, 1, t).astype(np.float32), terminals=terminals, timeouts=timeouts,
             ref_min_score=np.float64(1.5), ref_max_score=np.float64(9.0))
    return path


def test_trajectory_shards_give_the_file_batches(tmp_path: Path) -> None:
    npz = cartpole_npz(tmp_path / "d.npz")
    prepare("d4rl", npz, tmp_path / "shards", chunk_bytes="1KB", progress=False)
    kw = dict(context=5, batch_size=8, val_fraction=0.25, seed=4, data_dir=str(tmp_path))
    memory, streamed = TrajectoryData(train=str(npz), **kw), TrajectoryData(shards=str(tmp_path / "shards"), **kw)
    for dm in (memory, streamed):
        dm.setup("fit")
    a, b = memory.data_spec().control, streamed.data_spec().control
    assert a.ref_returns == b.ref_returns == (1.5, 9.0)
    assert torch.equal(a.state_mean, b.state_mean) and torch.equal(a.dataset_returns, b.dataset_returns)
    for e in (0, 1):
        assert_equal(epoch(memory.train_dataloader(), e), epoch(streamed.train_dataloader(), e))
    assert_equal(list(memory.val_dataloader()), list(streamed.val_dataloader()))

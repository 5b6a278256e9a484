"""Trajectory data: D4RL readers, episode splitting, returns-to-go, vectorized segments, embedded datasets."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

from corpora.control import (
    ControlCorpus, ControlDatasetSpec, build_control_dataset, cartpole_controller, pendulum_controller, run_episodes,
)
from mmformer.data.modules.trajectories import TrajectoryData, gather_segments
from mmformer.data.readers.d4rl import episodes_from_arrays, read_d4rl


def _arrays(continuous: bool = False) -> dict[str, np.ndarray]:
    """Three episodes of lengths 3 (terminal), 2 (timeout) and 4 (cut off: no flag at the end)."""
    t = 9
    rng = np.random.default_rng(0)
    actions = rng.uniform(-1, 1, (t, 2)).astype(np.float32) if continuous else rng.integers(0, 2, t)
    terminals, timeouts = np.zeros(t, bool), np.zeros(t, bool)
    terminals[2], timeouts[4] = True, True
    return {"observations": rng.normal(size=(t, 4)).astype(np.float32), "actions": actions,
            "rewards": np.arange(1, t + 1, dtype=np.float32), "terminals": terminals, "timeouts": timeouts}


def test_episodes_split_at_terminals_and_timeouts_with_returns_to_go() -> None:
    data = episodes_from_arrays(_arrays())
    assert data.starts.tolist() == [0, 3, 5] and data.ends.tolist() == [3, 5, 9]
    assert data.timesteps.tolist() == [0, 1, 2, 0, 1, 0, 1, 2, 3]
    # reference: a plain loop over episodes
    r = np.arange(1, 10, dtype=np.float64)
    ref = [r[t:e].sum() for s, e in ((0, 3), (3, 5), (5, 9)) for t in range(s, e)]
    assert data.returns_to_go.tolist() == pytest.approx(ref)
    assert data.returns.tolist() == [6, 9, 30]


def test_segments_are_vectorized_right_padded_and_match_a_loop() -> None:
    data = episodes_from_arrays(_arrays(continuous=True))
    start, k = torch.tensor([0, 1, 4, 7]), 3
    seg = gather_segments(data, start, k)
    assert seg["mask"].tolist() == [[1, 1, 1], [1, 1, 0], [1, 0, 0], [1, 1, 0]]
    for b, s in enumerate(start.tolist()):
        end = int(data.episode_end[s])
        for j in range(k):
            if s + j < end:
                assert torch.equal(seg["states"][b, j], data.observations[s + j])
                assert torch.equal(seg["actions"][b, j], data.actions[s + j])
                assert seg["timesteps"][b, j] == data.timesteps[s + j]
            else:  # padding is zero
                assert seg["states"][b, j].abs().sum() == 0 and seg["returns_to_go"][b, j] == 0


def test_npz_and_hdf5_read_the_same_episodes(tmp_path: Path) -> None:
    arrays = _arrays()
    np.savez(tmp_path / "d.npz", **arrays)
    with h5py.File(tmp_path / "d.hdf5", "w") as f:
        for k, v in arrays.items():
            f.create_dataset(k, data=v)
    a, b = read_d4rl(tmp_path / "d.npz"), read_d4rl(tmp_path / "d.hdf5")
    for k in arrays:
        assert np.array_equal(a[k], b[k]), k


def test_bad_datasets_get_clear_errors(tmp_path: Path) -> None:
    arrays = _arrays()
    np.savez(tmp_path / "nokey.npz", **{k: v for k, v in arrays.items() if k != "timeouts"})
    with pytest.raises(ValueError, match=r"lacks the D4RL key\(s\) \['timeouts'\]"):
        read_d4rl(tmp_path / "nokey.npz")
    with pytest.raises(ValueError, match="one entry per step.*'rewards': 8"):
        episodes_from_arrays({**arrays, "rewards": arrays["rewards"][:8]})
    with pytest.raises(ValueError, match="NaN"):
        episodes_from_arrays({**arrays, "rewards": np.full(9, np.nan, np.float32)})
    with pytest.raises(ValueError, match="unknown trajectory format"):
        (tmp_path / "d.csv").write_text("x")
        read_d4rl(tmp_path / "d.csv")


def test_scripted_cartpole_data_is_mixed_quality_and_cached(tmp_path: Path) -> None:
    spec = ControlDatasetSpec("CartPole-v1", [0.1, 0.5, 1.0], episodes_per_level=8, seed=3)
    path = build_control_dataset(spec, tmp_path)
    stamp = path.stat().st_mtime_ns
    assert build_control_dataset(spec, tmp_path).stat().st_mtime_ns == stamp  # cached, not rebuilt
    data = episodes_from_arrays(read_d4rl(path))
    returns = data.returns
    assert len(returns) == 24 and returns.max() >= 400 and returns.min() <= 60
    assert data.ref_max_score == 500 and data.ref_min_score < 50
    other = ControlDatasetSpec("CartPole-v1", [0.1, 0.5, 1.0], episodes_per_level=8, seed=4)
    assert other.cache_name() != spec.cache_name()


@pytest.mark.parametrize("env_id", ["CartPole-v1", "Pendulum-v1"])
def test_no_dataset_episode_starts_where_a_rollout_does(env_id: str, tmp_path: Path) -> None:
    """Test (0, 1, ...) and validation (10000, ...) rollouts reset from seeds the data never used."""
    import gymnasium as gym

    from mmformer.rollout import TEST_SEED_START, VAL_SEED_START

    spec = ControlDatasetSpec(env_id, [0.0, 1.0], episodes_per_level=60)
    data = episodes_from_arrays(read_d4rl(build_control_dataset(spec, tmp_path)))
    starts = {tuple(row) for row in np.round(data.observations[data.starts].numpy(), 6)}
    env = gym.make(env_id)
    for seed in [*range(TEST_SEED_START, TEST_SEED_START + 50), *range(VAL_SEED_START, VAL_SEED_START + 50)]:
        assert tuple(np.round(env.reset(seed=seed)[0], 6)) not in starts, seed


def test_controllers_beat_random_actions() -> None:
    for env_id, policy in (("CartPole-v1", cartpole_controller), ("Pendulum-v1", pendulum_controller)):
        good = run_episodes(env_id, policy, 0.0, 4, seed=1)["rewards"].sum()
        rand = run_episodes(env_id, policy, 1.0, 4, seed=1)["rewards"].sum()
        assert good > rand + abs(rand) * 0.5, env_id


def _module(tmp_path: Path, **kw) -> TrajectoryData:
    return TrajectoryData(data_dir=str(tmp_path), embedded=ControlCorpus(episodes_per_level=4), context=5, batch_size=8,
                          **kw)


def test_datamodule_statistics_come_from_training_episodes(tmp_path: Path) -> None:
    dm = _module(tmp_path, val_fraction=0.25)
    dm.setup("fit")
    train_obs = dm.train_episodes.observations
    assert torch.allclose(dm.state_mean, train_obs.mean(0)) and torch.allclose(dm.state_std, train_obs.std(0))
    assert len(dm.train_episodes.starts) + len(dm.val_episodes.starts) == 44
    batch = next(iter(dm.train_dataloader()))
    assert batch["states"].shape == (8, 5, 4) and batch["actions"].dtype == torch.long
    assert next(iter(dm.test_dataloader())).tolist() == list(range(50))


def test_action_space_mismatch_and_missing_env_are_named(tmp_path: Path) -> None:
    pend = build_control_dataset(ControlDatasetSpec("Pendulum-v1", [0.5], episodes_per_level=2), tmp_path)
    with pytest.raises(ValueError, match="continuous actions of size 1, but the environment has 2 discrete"):
        _module(tmp_path, train=str(pend), env_id="CartPole-v1").setup("fit")
    with pytest.raises(ValueError, match="'NoSuchEnv-v0' is not available"):
        _module(tmp_path, train=str(pend), env_id="NoSuchEnv-v0").setup("fit")


def test_an_embedded_builder_of_another_env_is_one_error_naming_both(tmp_path: Path) -> None:
    def build(data_dir: Path) -> dict:  # what corpora.control.ControlCorpus("Pendulum-v1") returns
        return {"train": data_dir / "pendulum.npz", "env_id": "Pendulum-v1"}

    dm = TrajectoryData(env_id="CartPole-v1", embedded=build, data_dir=str(tmp_path))
    with pytest.raises(ValueError, match="'CartPole-v1' but the embedded builder's episodes are of 'Pendulum-v1'"):
        dm.prepare_data()
    with pytest.raises(ValueError, match="no trajectories: set data.init_args.train"):
        TrajectoryData(data_dir=str(tmp_path)).prepare_data()

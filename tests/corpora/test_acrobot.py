"""The Acrobot second control corpus: deterministic, D4RL keys that TrajectoryData reads, rewards and
episode ends as Acrobot gives them, a controller better than chance, seeds apart from the rollouts', errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from corpora import acrobot
from mmformer.rollout import MAX_TEST_EPISODES, TEST_SEED_START, VAL_SEED_START

TINY = acrobot.AcrobotDatasetSpec(epsilons=[0.0, 1.0], episodes_per_level=3, reference_episodes=2)


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return acrobot.build(TINY, tmp_path_factory.mktemp("acrobot"))


def test_d4rl_keys_and_acrobot_rewards(built: Path) -> None:
    with np.load(built) as f:
        obs, act, rew, term, tout = (f[k] for k in ("observations", "actions", "rewards", "terminals", "timeouts"))
        ref_min, ref_max = float(f["ref_min_score"]), float(f["ref_max_score"])
    assert obs.dtype == np.float32 and obs.shape == (len(rew), acrobot.STATE_DIM)
    assert act.dtype == np.int64 and set(np.unique(act)) <= {0, 1, 2}
    assert int(term.sum() + tout.sum()) == 6 and (term | tout)[-1]  # 2 levels x 3 episodes, each ended
    assert set(np.unique(rew)) <= {-1.0, 0.0} and np.all(rew[term] == 0.0)  # -1 per step, 0 on reaching the goal
    returns = acrobot.episode_returns(built)
    assert len(returns) == 6 and np.all(returns >= -500)
    assert returns[:3].mean() > returns[3:].mean() + 100  # the controller (ε=0) beats random torques (ε=1)
    assert ref_max > ref_min + 100 and -200 < ref_max < -50


def test_trajectory_data_reads_it(built: Path) -> None:
    from mmformer.data import TrajectoryData

    dm = TrajectoryData(env_id=acrobot.ENV_ID, train=str(built), context=20, batch_size=4, val_fraction=0.0)
    dm.setup("fit")
    spec = dm.data_spec().control
    assert spec.env_id == "Acrobot-v1" and spec.state_dim == 6 and spec.act_dim == 3 and spec.discrete
    assert spec.ref_returns[1] > spec.ref_returns[0]
    batch = next(iter(dm.train_dataloader()))
    assert batch["states"].shape == (4, 20, 6) and batch["actions"].shape == (4, 20)
    assert float(batch["returns_to_go"][batch["mask"]].max()) <= 0.0  # returns are negative in Acrobot


def test_deterministic_and_seeded(built: Path, tmp_path: Path) -> None:
    again = acrobot.build(TINY, tmp_path)
    assert again.name == built.name
    with np.load(built) as a, np.load(again) as b:
        for k in ("observations", "actions", "rewards", "terminals", "timeouts"):
            assert np.array_equal(a[k], b[k]), k
    other = acrobot.AcrobotDatasetSpec(epsilons=[0.0, 1.0], episodes_per_level=3, reference_episodes=2, seed=1)
    assert other.cache_name() != TINY.cache_name()


def test_no_dataset_start_is_an_evaluation_seed() -> None:
    spec = acrobot.AcrobotDatasetSpec()
    levels = [*range(len(spec.epsilons)), 900, 901]
    resets = {acrobot._level_seed(spec, lv) * 100_003 + i for lv in levels for i in range(spec.episodes_per_level)}
    evaluated = {*range(TEST_SEED_START, TEST_SEED_START + MAX_TEST_EPISODES),
                 *range(VAL_SEED_START, VAL_SEED_START + 1000)}
    assert not resets & evaluated


def test_bad_input_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="epsilons"):
        acrobot.build(acrobot.AcrobotDatasetSpec(epsilons=[0.5, 1.5]), tmp_path)
    with pytest.raises(ValueError, match="epsilons"):
        acrobot.build(acrobot.AcrobotDatasetSpec(epsilons=[]), tmp_path)
    with pytest.raises(ValueError, match="positive"):
        acrobot.build(acrobot.AcrobotDatasetSpec(episodes_per_level=0), tmp_path)
    with pytest.raises(ValueError, match=r"\(N, 6\)"):
        acrobot.acrobot_controller(np.zeros((2, 4)))
    assert not list(tmp_path.iterdir())


def test_controller_pumps_along_the_elbow() -> None:
    obs = np.zeros((2, 6), np.float32)
    obs[0, 5], obs[1, 5] = 0.3, -0.3
    assert acrobot.acrobot_controller(obs).tolist() == [2, 0]


def test_a_second_build_reuses_the_file(built: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    stamp = built.stat().st_mtime_ns
    monkeypatch.setattr(acrobot, "run_episodes", lambda *a, **k: pytest.fail("rebuilt"))
    assert acrobot.build(TINY, built.parent) == built and built.stat().st_mtime_ns == stamp

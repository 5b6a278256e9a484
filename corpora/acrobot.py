"""A second offline-control corpus of another domain: Acrobot-v1 (swing a two-link pendulum's tip above a
line with a torque on the middle joint; reward -1 per step, at most 500 steps, 6-D states, 3 discrete torques).

The embedded decision-transformer datasets balance (CartPole, reward +1 per step alive) or swing up with a
continuous torque (Pendulum); here the returns are negative, the goal is reached sooner or later, and the
return says how fast. Behaviour: a scripted energy-pumping controller (:func:`acrobot_controller`, torque in
the direction of the second joint's velocity: ~-94 mean return, the goal in ~95 steps) whose action is replaced
by a uniformly random one with probability ε, for several ε levels (ε = 0 to 1; at ε = 1 the acrobot almost
never reaches the goal in 500 steps, return -500). Episodes of a level are seeded ``seed * 1000 + level``
and their env resets ``(that) * 100_003 + i`` — far from the rollout seeds of :mod:`mmformer.rollout`
(test 0-49, validation 10000-10049), so no evaluated start state is in the data.

Output, cached as ``data/acrobot-v1-scripted-<hash of the settings>.npz`` in the D4RL format that
``mmformer.data.TrajectoryData(path=...)`` reads: ``observations (T, 6) float32, actions (T,) int64,
rewards (T,), terminals (T,), timeouts (T,)`` plus ``ref_min_score``/``ref_max_score`` (mean returns of the
random policy and of the clean controller over 20 reference episodes, for normalized scores).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from corpora.control import run_episodes, save_d4rl

ENV_ID = "Acrobot-v1"
STATE_DIM, NUM_ACTIONS = 6, 3  # [cos θ1, sin θ1, cos θ2, sin θ2, θ̇1, θ̇2]; torque -1, 0, +1
VERSION = 1  # bump when the controller or the file layout changes, so caches rebuild


def acrobot_controller(obs: np.ndarray) -> np.ndarray:
    """Torque +1 (action 2) while the second joint turns forward, -1 (action 0) otherwise: ``(N, 6) → (N,)``.

    Pushing along the elbow's own velocity adds energy to the swing each half cycle (bang-bang energy
    pumping); it reaches the goal line in ~95 steps on average, against ~500 for random torques.
    """
    obs = np.asarray(obs)
    if obs.ndim != 2 or obs.shape[1] != STATE_DIM:
        raise ValueError(f"Acrobot observations are (N, {STATE_DIM}), got {obs.shape}")
    return np.where(obs[:, 5] > 0, 2, 0).astype(np.int64)


@dataclass
class AcrobotDatasetSpec:
    """What the dataset is made of; its hash names the cache file."""

    epsilons: list[float] = field(default_factory=lambda: [0.0, 0.2, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0])
    episodes_per_level: int = 100  # episodes for every ε level
    reference_episodes: int = 20  # episodes of the random policy and of the clean controller (ref scores)
    seed: int = 0  # seeds env resets and the random actions
    version: int = VERSION

    def cache_name(self) -> str:
        digest = hashlib.sha1(json.dumps(asdict(self), sort_keys=True).encode()).hexdigest()[:10]
        return f"{ENV_ID.lower()}-scripted-{digest}.npz"


def _level_seed(spec: AcrobotDatasetSpec, level: int) -> int:
    return spec.seed * 1000 + 1 + level  # run_episodes resets env i with seed * 100_003 + i: never 0-49 or 10000+


def build(spec: AcrobotDatasetSpec = AcrobotDatasetSpec(), data_dir: str | Path = "data") -> Path:
    """Generates (or finds in the cache) the dataset of ``spec``; returns the ``.npz`` path.

    Raises:
        ValueError: an ε outside [0, 1], no levels, or a non-positive episode count.
    """
    if not spec.epsilons or any(not 0.0 <= e <= 1.0 for e in spec.epsilons):
        raise ValueError(f"epsilons must be a non-empty list of probabilities in [0, 1], got {spec.epsilons}")
    if spec.episodes_per_level <= 0 or spec.reference_episodes <= 0:
        raise ValueError(f"episodes_per_level and reference_episodes must be positive, got "
                         f"{spec.episodes_per_level} and {spec.reference_episodes}")
    path = Path(data_dir) / spec.cache_name()
    if path.is_file():
        return path
    parts = []
    with tqdm(total=len(spec.epsilons) * spec.episodes_per_level, desc=f"scripted {ENV_ID} episodes", unit="ep") as bar:
        for level, eps in enumerate(spec.epsilons):
            parts.append(run_episodes(ENV_ID, acrobot_controller, eps, spec.episodes_per_level,
                                      _level_seed(spec, level), bar))
    refs = [run_episodes(ENV_ID, acrobot_controller, eps, spec.reference_episodes, _level_seed(spec, 900 + k))
            for k, eps in enumerate((1.0, 0.0))]
    return save_d4rl(path, parts, refs, spec.reference_episodes, asdict(spec))


def episode_returns(path: str | Path) -> np.ndarray:
    """The undiscounted return of every episode in the file, in order."""
    with np.load(path) as f:
        rewards, done = f["rewards"], f["terminals"] | f["timeouts"]
    ends = np.flatnonzero(done) + 1
    return np.add.reduceat(rewards, np.concatenate([[0], ends[:-1]])) if len(ends) else np.array([rewards.sum()])

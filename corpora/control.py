"""Embedded offline-RL datasets: scripted controllers mixed with random actions, saved with D4RL keys.

Two builders, both seeded and cached under ``data/`` as ``.npz`` (rebuilt only when the settings
change, the hash of the settings is in the file name):

* ``CartPole-v1``: a linear balancing controller whose action is replaced by a uniformly random one
  with probability ε, for several ε levels; quality is mixed (ε = 0.1 keeps the pole up for 500 steps,
  ε = 1 drops it after ~20).
* ``Pendulum-v1``: an energy-pumping swing-up controller with a PD balancer near the top; Gaussian
  noise of several scales σ is added to its torque (clipped to the bounds), and at the two noisiest
  levels the torque is also replaced by a uniform random one with probability ε.

Files hold ``observations (T, S) float32, actions (T,) int64 | (T, A) float32, rewards (T,),
terminals (T,) bool, timeouts (T,) bool`` plus ``ref_min_score``/``ref_max_score`` (the mean return
of the random policy and of the clean controller, for normalized scores, as D4RL reports them).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import gymnasium as gym
import numpy as np
from tqdm.auto import tqdm

Policy = Callable[[np.ndarray], np.ndarray]  # observations (N, S) → actions (N,) or (N, A)


def cartpole_controller(obs: np.ndarray) -> np.ndarray:
    """Pushes the cart towards where the pole leans (plus a weak pull to the centre): ``(N, 4) → (N,)``."""
    x, x_dot, theta, theta_dot = obs.T
    return (theta + 0.5 * theta_dot + 0.05 * x + 0.1 * x_dot > 0).astype(np.int64)


def pendulum_controller(obs: np.ndarray) -> np.ndarray:
    """Energy-based swing-up, PD balancing near the top: ``(N, 3) [cos, sin, θ̇] → (N, 1)`` torque in [-2, 2].

    Pendulum-v1 obeys θ̈ = 15 sin θ + 3u (θ = 0 upright), so E = θ̇²/2 + 15 cos θ is conserved without
    torque and E = 15 at rest on top; pumping ``u ∝ (15 - E) θ̇`` drives E there.
    """
    cos, sin, theta_dot = obs.T
    theta = np.arctan2(sin, cos)
    energy = 0.5 * theta_dot**2 + 15.0 * cos
    pump = 0.5 * (15.0 - energy) * np.sign(theta_dot + 1e-6)
    balance = -(12.0 * theta + 2.5 * theta_dot)
    u = np.where(cos > 0.85, balance, pump)
    return np.clip(u, -2.0, 2.0)[:, None].astype(np.float32)


@dataclass
class ControlDatasetSpec:
    """What a scripted dataset is made of; its hash names the cache file."""

    env_id: str = "CartPole-v1"  # gymnasium environment id
    epsilons: list[float] = field(default_factory=lambda: [0.1, 0.2, 0.3, 0.4, 0.45, 0.5, 0.55, 0.6, 0.7, 0.8, 1.0])
    noise_stds: list[float] | None = None  # per level: Gaussian noise std on continuous actions (None = 0)
    episodes_per_level: int = 100  # episodes for every ε level
    seed: int = 0  # seeds env resets and the random actions
    version: int = 2  # bump when the controllers or the seeds change (2: no episode starts at a rollout seed)

    def cache_name(self) -> str:
        digest = hashlib.sha1(json.dumps(asdict(self), sort_keys=True).encode()).hexdigest()[:10]
        return f"{self.env_id.lower().replace('/', '_')}-scripted-{digest}.npz"


def level_seed(spec: ControlDatasetSpec, level: int) -> int:
    """The seed of ε level ``level``'s episodes: :func:`run_episodes` resets env ``i`` with ``seed * 100_003 + i``,
    so from 1 on no dataset episode starts where a test (0, 1, ...) or validation (10000, ...) rollout of
    :mod:`mmformer.rollout` does. (Version 1 seeded level 0 with 0: its episodes started at the test seeds.)"""
    return spec.seed * 1000 + 1 + level


CONTROLLERS: dict[str, Policy] = {"CartPole-v1": cartpole_controller, "Pendulum-v1": pendulum_controller}
PENDULUM_EPSILONS = [0.0, 0.0, 0.0, 0.0, 0.2, 0.5]
PENDULUM_NOISE = [0.0, 1.0, 2.0, 3.0, 5.0, 8.0]  # clean controller ~-145, σ=2 ~-500, σ=5 ~-850


def _random_actions(space: gym.Space, n: int, rng: np.random.Generator) -> np.ndarray:
    if isinstance(space, gym.spaces.Discrete):
        return rng.integers(0, int(space.n), size=n).astype(np.int64)
    low, high = np.broadcast_to(space.low, space.shape), np.broadcast_to(space.high, space.shape)
    return rng.uniform(low, high, size=(n, *space.shape)).astype(np.float32)


def run_episodes(
    env_id: str, policy: Policy, epsilon: float, num_episodes: int, seed: int, progress: tqdm | None = None,
    noise_std: float = 0.0,
) -> dict[str, np.ndarray]:
    """``num_episodes`` episodes stepped together (one policy call per step for all), in D4RL keys.

    Continuous actions get Gaussian noise of std ``noise_std`` (clipped to the bounds); then, with
    probability ``epsilon``, each action is replaced by a uniformly random one.
    """
    rng = np.random.default_rng(seed)
    envs = [gym.make(env_id) for _ in range(num_episodes)]
    obs = np.stack([env.reset(seed=seed * 100_003 + i)[0] for i, env in enumerate(envs)])
    alive = np.ones(num_episodes, dtype=bool)
    steps: list[list[tuple]] = [[] for _ in range(num_episodes)]
    space = envs[0].action_space
    while alive.any():
        idx = np.flatnonzero(alive)
        act = policy(obs[idx])
        if noise_std > 0 and isinstance(space, gym.spaces.Box):
            act = np.clip(act + rng.normal(0.0, noise_std, act.shape), space.low, space.high).astype(act.dtype)
        noisy = rng.random(len(idx)) < epsilon
        act[noisy] = _random_actions(space, int(noisy.sum()), rng)
        for j, i in enumerate(idx):
            a = act[j]
            nxt, r, term, trunc, _ = envs[i].step(a.item() if a.ndim == 0 else a)
            steps[i].append((obs[i].copy(), a, float(r), bool(term), bool(trunc)))
            obs[i] = nxt
            if term or trunc:
                alive[i] = False
                if progress is not None:
                    progress.update(1)
    for env in envs:
        env.close()
    flat = [s for ep in steps for s in ep]
    return {
        "observations": np.stack([s[0] for s in flat]).astype(np.float32),
        "actions": np.stack([s[1] for s in flat]),
        "rewards": np.array([s[2] for s in flat], dtype=np.float32),
        "terminals": np.array([s[3] for s in flat], dtype=bool),
        "timeouts": np.array([s[4] for s in flat], dtype=bool),
    }


def build_control_dataset(spec: ControlDatasetSpec, data_dir: str | Path = "data") -> Path:
    """Generates (or finds in the cache) the scripted dataset of ``spec``; returns the ``.npz`` path."""
    if spec.env_id not in CONTROLLERS:
        raise ValueError(f"no scripted controller for {spec.env_id!r}; "
                         f"embedded datasets exist for {sorted(CONTROLLERS)}")
    path = Path(data_dir) / spec.cache_name()
    if path.is_file():
        return path
    policy = CONTROLLERS[spec.env_id]
    parts = []
    total = len(spec.epsilons) * spec.episodes_per_level
    with tqdm(total=total, desc=f"scripted {spec.env_id} episodes", unit="ep") as bar:
        noise = spec.noise_stds or [0.0] * len(spec.epsilons)
        if len(noise) != len(spec.epsilons):
            raise ValueError(f"noise_stds has {len(noise)} levels but epsilons has {len(spec.epsilons)}")
        for level, (eps, std) in enumerate(zip(spec.epsilons, noise)):
            parts.append(run_episodes(spec.env_id, policy, eps, spec.episodes_per_level,
                                      level_seed(spec, level), bar, noise_std=std))
        refs = [run_episodes(spec.env_id, policy, e, 20, spec.seed * 1000 + 999 + k) for k, e in enumerate((1.0, 0.0))]
    return save_d4rl(path, parts, refs, 20, asdict(spec))


def save_d4rl(path: Path, parts: list[dict[str, np.ndarray]], refs: list[dict[str, np.ndarray]],
              ref_episodes: int, spec: dict) -> Path:
    """Writes the episodes of ``parts`` (D4RL keys, from :func:`run_episodes`) as one ``.npz`` at ``path``, with
    ``ref_min_score``/``ref_max_score`` the mean returns of the two reference runs ``refs`` (random, then clean;
    ``ref_episodes`` episodes each) and the settings ``spec`` as JSON; written whole, then renamed, so the
    cache never holds half a file."""
    data = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
    ref_min, ref_max = (float(r["rewards"].sum()) / ref_episodes for r in refs)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp.npz")
    np.savez_compressed(tmp, **data, ref_min_score=np.float32(ref_min), ref_max_score=np.float32(ref_max),
                        spec=np.array(json.dumps(spec)))
    tmp.replace(path)
    return path


def default_spec(env_id: str, episodes_per_level: int | None = None, seed: int = 0) -> ControlDatasetSpec:
    """The shipped mixture for ``env_id`` (CartPole: 11 ε levels; Pendulum: 6 noise levels)."""
    if env_id == "Pendulum-v1":
        return ControlDatasetSpec(env_id, list(PENDULUM_EPSILONS), list(PENDULUM_NOISE), episodes_per_level or 50, seed)
    return ControlDatasetSpec(env_id, episodes_per_level=episodes_per_level or 100, seed=seed)


class ControlCorpus:
    """``ControlCorpus(...)(data_dir) -> {"train": <.npz>, "env_id": ...}``: the decision-transformer recipes'
    builder (the shipped mixture of :func:`default_spec`, generated once into ``data_dir``).

    Args:
        env_id: gymnasium id of the scripted controller's environment (``CartPole-v1`` or ``Pendulum-v1``).
        episodes_per_level: episodes per ε level (None = the mixture's default).
        seed: episode seeds and ε draws.
    """

    def __init__(self, env_id: str = "CartPole-v1", episodes_per_level: int | None = None, seed: int = 0) -> None:
        self.env_id, self.episodes_per_level, self.seed = env_id, episodes_per_level, seed

    def __call__(self, data_dir: Path) -> dict:
        path = build_control_dataset(default_spec(self.env_id, self.episodes_per_level, self.seed), data_dir)
        return {"train": path, "env_id": self.env_id}

"""Return-conditioned gymnasium rollouts of a decision transformer, N episodes stepped together.

Every step, the N environments' last K timesteps go through one model forward (a sliding window:
the model was trained on K-step contexts, so it never attends further back than it learned to).
The return-to-go fed at each step is the target minus the reward collected so far.

Randomness is per episode: an episode's env reset and its sampled actions depend on its own seed only
(:func:`action_uniforms`), never on which other episodes share its batch or how seeds are split over
processes. Validation and test episodes use disjoint seed ranges (:data:`VAL_SEED_START`,
:data:`TEST_SEED_START`): decoding choices (sampling, temperature) are made on validation seeds, and
the test seeds are measured once.
"""

from __future__ import annotations

from typing import NamedTuple, Protocol

import gymnasium as gym
import numpy as np
import torch
from torch import Tensor


# Episode seeds, defined here only. Test/predict episodes are seeds TEST_SEED_START + 0, 1, ..., n - 1
# (TrajectoryData's eval_episodes, at most MAX_TEST_EPISODES); validation rollouts are VAL_SEED_START + 0,
# 1, ... (the task's val_episodes). Anything tuned by looking at returns is tuned on validation seeds.
TEST_SEED_START = 0
VAL_SEED_START = 10_000
MAX_TEST_EPISODES = VAL_SEED_START - TEST_SEED_START  # so the two ranges never meet
_ACTION_STREAM = 0x5EED_AC7  # keeps an episode's action draws apart from its env's own stream (same seed)


def action_uniforms(seeds: list[int], steps: int) -> Tensor:
    """Per-episode uniform draws in ``[0, 1)``, ``(N, steps)`` float64, for sampling actions.

    Row ``i`` depends on ``seeds[i]`` alone (a numpy ``SeedSequence([seed, stream])`` per episode),
    so an episode samples the same actions alone, in any batch, on any rank and on any device.
    """
    out = np.empty((len(seeds), steps))
    for i, s in enumerate(seeds):
        out[i] = np.random.default_rng([int(s), _ACTION_STREAM]).random(steps)
    return torch.from_numpy(out)


class ActionModel(Protocol):
    """What a rollout needs from a model (``DecisionTransformer`` provides it)."""

    context: int
    discrete: bool
    act_dim: int
    state_dim: int

    def act(self, traj: dict[str, Tensor], sample: bool, temperature: float,
            uniform: Tensor | None) -> Tensor: ...


class RolloutResult(NamedTuple):
    """What :func:`rollout` returns, one row per episode (in ``seeds`` order)."""

    returns: Tensor  # (N,) undiscounted episode returns
    lengths: Tensor  # (N,) episode lengths in steps
    actions: Tensor  # (N, T) ids or (N, T, A): the actions taken; zero past each episode's length


def make_env(env_id: str) -> gym.Env:
    """``gymnasium.make(env_id)`` with an error that says the environment is not installed."""
    try:
        return gym.make(env_id)
    except gym.error.Error as e:  # NameNotFound, VersionNotFound, NamespaceNotFound, DependencyNotInstalled
        raise ValueError(
            f"gymnasium environment {env_id!r} is not available ({type(e).__name__}: {e}); check the id "
            f"(e.g. 'CartPole-v1', 'Pendulum-v1') or install the package that registers it"
        ) from e


def check_action_space(space: gym.Space, discrete: bool, act_dim: int, what: str) -> None:
    """Raises ValueError when ``what`` (a dataset or model) does not fit the env's action space."""
    if isinstance(space, gym.spaces.Discrete):
        if not discrete:
            raise ValueError(f"{what} has continuous actions of size {act_dim}, but the environment has "
                             f"{int(space.n)} discrete actions")
        if act_dim > int(space.n):
            raise ValueError(f"{what} uses action ids up to {act_dim - 1}, but the environment has only "
                             f"{int(space.n)} actions")
    elif isinstance(space, gym.spaces.Box) and len(space.shape) == 1:
        if discrete or act_dim != space.shape[0]:
            kind = f"{act_dim} discrete actions" if discrete else f"continuous actions of size {act_dim}"
            raise ValueError(f"{what} has {kind}, but the environment's actions are continuous of shape {space.shape}")
    else:
        raise ValueError(f"action space {space} is not supported (Discrete or 1-D Box)")


@torch.no_grad()
def rollout(
    model: ActionModel,
    env_id: str,
    target_return: float | Tensor,
    seeds: list[int],
    *,
    sample: bool = True,
    temperature: float = 1.0,
    max_steps: int | None = None,
    device: torch.device | str = "cpu",
) -> RolloutResult:
    """Runs ``len(seeds)`` episodes conditioned on ``target_return``; one forward per step for all.

    Args:
        model: the decision transformer (``act`` gives actions for the last state of each window).
        env_id: gymnasium id; its action space must match the model's.
        target_return: scalar, or ``(N,)`` one per episode.
        seeds: env reset seeds, one per episode; each also seeds its own episode's action sampling
            (:func:`action_uniforms`), so results do not depend on how seeds are batched.
        sample: sample discrete actions from the softmax (else the most likely one).
        temperature: softmax temperature when sampling.
        max_steps: step cap (default: the env's ``max_episode_steps``, else 1000).
    """
    n, k = len(seeds), model.context
    envs = [make_env(env_id) for _ in range(n)]
    check_action_space(envs[0].action_space, model.discrete, model.act_dim, "the model")
    obs_space = envs[0].observation_space
    if obs_space.shape != (model.state_dim,):
        raise ValueError(f"the model expects states of size {model.state_dim}, "
                         f"environment {env_id!r} gives {obs_space.shape}")
    horizon = max_steps or (envs[0].spec.max_episode_steps if envs[0].spec else None) or 1000
    # One uniform per episode and step, drawn on the host from the episode's own seed (then moved once).
    draws = action_uniforms(seeds, horizon).to(device) if sample and model.discrete else None
    a_shape = () if model.discrete else (model.act_dim,)
    states = torch.zeros(n, horizon, model.state_dim, device=device)
    actions = torch.zeros(n, horizon, *a_shape, dtype=torch.long if model.discrete else torch.float32, device=device)
    rtg = torch.zeros(n, horizon, device=device)
    states[:, 0] = torch.as_tensor(np.stack([e.reset(seed=int(s))[0] for e, s in zip(envs, seeds)]), device=device)
    rtg[:, 0] = torch.as_tensor(target_return, dtype=torch.float32, device=device).expand(n)
    returns, lengths = np.zeros(n), np.zeros(n, dtype=np.int64)
    alive = np.ones(n, dtype=bool)
    for t in range(horizon):
        lo = max(0, t - k + 1)
        live = np.flatnonzero(alive)
        rows = torch.as_tensor(live, device=device)  # finished episodes leave the batch
        window = slice(lo, t + 1)  # the last min(t + 1, K) timesteps; the current action is a placeholder
        traj = {"returns_to_go": rtg[rows, window], "states": states[rows, window], "actions": actions[rows, window],
                "timesteps": torch.arange(lo, t + 1, device=device).expand(len(live), -1),
                "mask": torch.ones(len(live), t + 1 - lo, dtype=torch.bool, device=device)}
        uniform = draws[rows, t] if draws is not None else None
        act = model.act(traj, sample, temperature, uniform)  # (n_live,) or (n_live, A)
        actions[rows, t] = act
        act_np = act.cpu().numpy()  # the envs step on the host
        rewards = np.zeros(n, dtype=np.float32)
        for j, i in enumerate(live):
            a = act_np[j].item() if model.discrete else act_np[j]
            obs, r, term, trunc, _ = envs[i].step(a)
            rewards[i], returns[i], lengths[i] = r, returns[i] + r, t + 1
            if t + 1 < horizon:
                states[i, t + 1] = torch.as_tensor(obs, device=device)
            alive[i] = not (term or trunc)
        if not alive.any() or t + 1 == horizon:
            break
        rtg[:, t + 1] = rtg[:, t] - torch.as_tensor(rewards, device=device)  # the true remaining return
    for e in envs:
        e.close()
    taken = actions[:, : int(lengths.max(initial=0))].cpu()
    return RolloutResult(torch.as_tensor(returns, dtype=torch.float32), torch.as_tensor(lengths), taken)

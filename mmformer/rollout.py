"""Return-conditioned gymnasium rollouts of a decision transformer, N episodes stepped together.

Every step, the N environments' last K timesteps go through one model forward (a sliding window:
the model was trained on K-step contexts, so it never attends further back than it learned to).
The return-to-go fed at each step is the target minus the reward collected so far.
"""

from __future__ import annotations

from typing import NamedTuple, Protocol

import gymnasium as gym
import numpy as np
import torch
from torch import Tensor


class ActionModel(Protocol):
    """What a rollout needs from a model (``DecisionTransformer`` provides it)."""

    context: int
    discrete: bool
    act_dim: int
    state_dim: int

    def act(self, traj: dict[str, Tensor], sample: bool, temperature: float,
            generator: torch.Generator | None) -> Tensor: ...


class RolloutResult(NamedTuple):
    returns: Tensor  # (N,) undiscounted episode returns
    lengths: Tensor  # (N,) episode lengths in steps


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
        seeds: env reset seeds, one per episode (also seed the action sampling).
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
    gen = torch.Generator(device=device).manual_seed(int(seeds[0]) * 7919 + n if seeds else 0)
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
        act = model.act(traj, sample, temperature, gen)  # (n_live,) or (n_live, A)
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
    return RolloutResult(torch.as_tensor(returns, dtype=torch.float32), torch.as_tensor(lengths))

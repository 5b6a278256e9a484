"""D4RL-style offline control datasets: ``.npz``/HDF5 readers and the episodes they hold.

Datasets hold flat per-step arrays in D4RL keys: ``observations (T, S)``, ``actions (T,)`` ids or
``(T, A)`` vectors, ``rewards (T,)``, ``terminals (T,)``, ``timeouts (T,)``. Episodes end after
a step flagged terminal or timeout.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

D4RL_KEYS = ("observations", "actions", "rewards", "terminals", "timeouts")


def read_d4rl(path: str | Path) -> dict[str, np.ndarray]:
    """Reads the D4RL keys (and optional ``ref_min_score``/``ref_max_score``) from ``.npz`` or HDF5."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"trajectory dataset {path} does not exist")
    if path.suffix == ".npz":
        with np.load(path) as f:
            found = {k: f[k] for k in f.files}
    elif path.suffix in (".h5", ".hdf5"):
        import h5py

        with h5py.File(path, "r") as f:
            found = {k: f[k][()] for k in f.keys() if isinstance(f[k], h5py.Dataset)}
    else:
        raise ValueError(f"{path}: unknown trajectory format {path.suffix!r}; use .npz or .hdf5/.h5 with D4RL keys")
    missing = [k for k in D4RL_KEYS if k not in found]
    if missing:
        raise ValueError(f"{path} lacks the D4RL key(s) {missing}; a trajectory dataset needs {list(D4RL_KEYS)} "
                         f"(found {sorted(found)})")
    return found


@dataclass
class Episodes:
    """Flat per-step arrays plus episode boundaries (``ends`` exclusive)."""

    observations: Tensor  # (T, S) float32
    actions: Tensor  # (T,) int64 ids or (T, A) float32
    rewards: Tensor  # (T,) float32
    returns_to_go: Tensor  # (T,) float32: reward from this step to the episode's end
    timesteps: Tensor  # (T,) int64: step index within the episode
    episode_end: Tensor  # (T,) int64: exclusive end of the step's episode
    starts: Tensor  # (E,) int64
    ends: Tensor  # (E,) int64
    ref_min_score: float | None = None  # mean return of a random policy (normalized score 0)
    ref_max_score: float | None = None  # mean return of an expert (normalized score 100)

    @property
    def discrete(self) -> bool:
        return self.actions.dim() == 1

    @property
    def returns(self) -> Tensor:
        """Undiscounted return of every episode ``(E,)``."""
        return self.returns_to_go[self.starts]

    def select(self, episodes: Tensor) -> Episodes:
        """The episodes with indices ``episodes`` as a new, contiguous dataset."""
        lengths = self.ends[episodes] - self.starts[episodes]
        steps = torch.repeat_interleave(self.starts[episodes] - torch.cumsum(lengths, 0) + lengths, lengths)
        steps = steps + torch.arange(int(lengths.sum()))
        new_ends = torch.cumsum(lengths, 0)
        return Episodes(
            self.observations[steps], self.actions[steps], self.rewards[steps], self.returns_to_go[steps],
            self.timesteps[steps], torch.repeat_interleave(new_ends, lengths), new_ends - lengths, new_ends,
            self.ref_min_score, self.ref_max_score,
        )


def episodes_from_arrays(arrays: dict[str, np.ndarray], source: str = "dataset") -> Episodes:
    """Validates D4RL arrays, splits them at terminals/timeouts and computes returns-to-go.

    A trailing run of steps without a terminal or timeout flag is kept as a (truncated) episode.
    """
    n = len(arrays["rewards"])
    lengths = {k: len(arrays[k]) for k in D4RL_KEYS}
    if len(set(lengths.values())) != 1:
        raise ValueError(f"{source}: the D4RL arrays must have one entry per step, got lengths {lengths}")
    if n == 0:
        raise ValueError(f"{source}: the dataset has no steps")
    obs = torch.as_tensor(np.asarray(arrays["observations"], dtype=np.float32))
    if obs.dim() != 2:
        raise ValueError(f"{source}: observations must be (T, S), got shape {tuple(obs.shape)}")
    raw_actions = np.asarray(arrays["actions"])
    if raw_actions.ndim == 1 and np.issubdtype(raw_actions.dtype, np.integer):
        actions = torch.as_tensor(raw_actions.astype(np.int64))
    elif raw_actions.ndim == 2:
        actions = torch.as_tensor(raw_actions.astype(np.float32))
    else:
        raise ValueError(f"{source}: actions must be integer ids (T,) or float vectors (T, A), got "
                         f"{raw_actions.dtype} of shape {raw_actions.shape}")
    rewards = torch.as_tensor(np.asarray(arrays["rewards"], dtype=np.float32)).reshape(-1)
    for name, t in (("observations", obs), ("actions", actions.float()), ("rewards", rewards)):
        if not bool(torch.isfinite(t).all()):
            raise ValueError(f"{source}: {name} contain NaN or inf")
    done = np.asarray(arrays["terminals"]).astype(bool) | np.asarray(arrays["timeouts"]).astype(bool)
    ends = np.flatnonzero(done) + 1
    if len(ends) == 0 or ends[-1] != n:
        ends = np.append(ends, n)
    ends_t = torch.as_tensor(ends, dtype=torch.long)
    starts = torch.cat([torch.zeros(1, dtype=torch.long), ends_t[:-1]])
    lengths_t = ends_t - starts
    episode = torch.repeat_interleave(torch.arange(len(starts)), lengths_t)  # (T,) episode id of each step
    # Returns-to-go without a per-episode loop: C = inclusive prefix sums, rtg[t] = C[end-1] - C[t] + r[t].
    csum = torch.cumsum(rewards.double(), 0)
    rtg = (csum[ends_t - 1][episode] - csum + rewards.double()).float()
    timesteps = torch.arange(n) - starts[episode]
    ref = {k: float(arrays[k]) if k in arrays else None for k in ("ref_min_score", "ref_max_score")}
    return Episodes(obs, actions, rewards, rtg, timesteps, ends_t[episode], starts, ends_t, **ref)

"""D4RL-style offline control datasets: ``.npz``/HDF5 readers and the episodes they hold.

Datasets hold flat per-step arrays in D4RL keys: ``observations (T, S)``, ``actions (T,)`` ids or
``(T, A)`` vectors, ``rewards (T,)``, ``terminals (T,)``, ``timeouts (T,)``. Episodes end after
a step flagged terminal or timeout.
"""

from __future__ import annotations

import math
import struct
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

D4RL_KEYS = ("observations", "actions", "rewards", "terminals", "timeouts")
MAX_ACTION_ID = 1 << 20  # discrete action ids: the model embeds max id + 1 actions, so a corrupt id must not pass


def read_d4rl(path: str | Path) -> dict[str, np.ndarray]:
    """Reads the D4RL keys (and optional ``ref_min_score``/``ref_max_score``) from ``.npz`` or HDF5.

    Raises:
        FileNotFoundError: no such file.
        ValueError: an unknown suffix, a file that is not a readable ``.npz``/HDF5 (naming the file and
            the array), or a missing D4RL key.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"trajectory dataset {path} does not exist")
    if path.suffix == ".npz":
        found = _read_npz(path)
    elif path.suffix in (".h5", ".hdf5"):
        import h5py

        try:
            with h5py.File(path, "r") as f:
                found = {k: f[k][()] for k in f.keys() if isinstance(f[k], h5py.Dataset)}
        except (OSError, KeyError, RuntimeError) as err:  # h5py's errors for a corrupt or truncated file
            raise ValueError(f"{path} is not a readable HDF5 file ({err}); re-save it with h5py") from err
    else:
        raise ValueError(f"{path}: unknown trajectory format {path.suffix!r}; use .npz or .hdf5/.h5 with D4RL keys")
    missing = [k for k in D4RL_KEYS if k not in found]
    if missing:
        raise ValueError(f"{path} lacks the D4RL key(s) {missing}; a trajectory dataset needs {list(D4RL_KEYS)} "
                         f"(found {sorted(found)})")
    return found


def _read_npz(path: Path) -> dict[str, np.ndarray]:
    """Every array of an ``.npz``; each ``.npy`` header is checked against the bytes stored before anything is
    allocated (a corrupt shape would otherwise ask for terabytes), and pickled (object) arrays are refused."""
    found = {}
    try:
        with zipfile.ZipFile(path) as archive:
            for info in archive.infolist():
                key = info.filename.removesuffix(".npy")
                with archive.open(info) as f:
                    version = np.lib.format.read_magic(f)
                    header = np.lib.format.read_array_header_1_0 if version == (1, 0) else \
                        np.lib.format.read_array_header_2_0
                    shape, _, dtype = header(f)  # checks the header's form
                    if dtype.hasobject:
                        raise ValueError(f"{path}: array {key!r} holds Python objects (pickled); store numbers")
                    need = math.prod(shape) * dtype.itemsize
                    if need > info.file_size:
                        raise ValueError(f"{path}: array {key!r} declares shape {shape} of {dtype} ({need} bytes) but "
                                         f"stores {info.file_size} bytes; the file is corrupt")
                with archive.open(info) as f:
                    found[key] = np.lib.format.read_array(f, allow_pickle=False)
    except ValueError as err:
        if str(path) in str(err):
            raise
        raise ValueError(f"{path} is not a readable .npz file ({err}); re-save it with numpy.savez") from err
    except (zipfile.BadZipFile, OSError, EOFError, KeyError, zlib.error, struct.error, NotImplementedError,
            RuntimeError) as err:  # zipfile's errors for a corrupt archive (RuntimeError: "encrypted")
        raise ValueError(f"{path} is not a readable .npz file ({type(err).__name__}: {err}); re-save it with "
                         f"numpy.savez") from err
    return found


def _numbers(value: object, key: str, source: str) -> np.ndarray:
    """An array of booleans, integers or floats (not text, dates, complex numbers or objects)."""
    a = np.asarray(value)
    if a.dtype.kind not in "biuf":
        raise ValueError(f"{source}: {key} must hold numbers, got dtype {a.dtype}")
    return a


def _float32(a: np.ndarray) -> np.ndarray:
    with np.errstate(over="ignore", invalid="ignore"):  # past float32's range becomes inf: refused by the caller
        return a.astype(np.float32)


def _score(value: object, key: str, source: str) -> float:
    a = _numbers(value, key, source)
    if a.size != 1 or not np.isfinite(a).all():
        raise ValueError(f"{source}: {key} must be one finite number, got {a.dtype} of shape {a.shape}: "
                         f"{str(a)[:60]}")
    return float(a.reshape(()))


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

    Raises:
        ValueError: naming ``source`` and the array: non-numeric dtypes, shapes that are not one entry per
            step, NaN/inf (or past float32's range), negative or absurd discrete action ids, a reference
            score that is not one finite number.
    """
    raw = {k: _numbers(arrays[k], k, source) for k in D4RL_KEYS}
    n = raw["rewards"].shape[0] if raw["rewards"].ndim else 0
    lengths = {k: a.shape[0] if a.ndim else "a scalar" for k, a in raw.items()}
    if any(a.ndim == 0 or a.shape[0] != n for a in raw.values()):
        raise ValueError(f"{source}: the D4RL arrays must have one entry per step, got lengths {lengths}")
    if n == 0:
        raise ValueError(f"{source}: the dataset has no steps")
    for key in ("rewards", "terminals", "timeouts"):
        if raw[key].shape not in ((n,), (n, 1)):
            raise ValueError(f"{source}: {key} must be one value per step (T,), got shape {raw[key].shape}")
    if raw["observations"].ndim != 2 or raw["observations"].shape[1] == 0:
        raise ValueError(f"{source}: observations must be (T, S) with S >= 1, got shape {raw['observations'].shape}")
    raw_actions = raw["actions"]
    if raw_actions.ndim == 1 and raw_actions.dtype.kind in "iu":
        if raw_actions.min() < 0 or raw_actions.max() >= MAX_ACTION_ID:
            raise ValueError(f"{source}: discrete action ids must lie in [0, {MAX_ACTION_ID}), got "
                             f"{raw_actions.min()}..{raw_actions.max()}; the file is corrupt, or store continuous "
                             f"actions as float vectors (T, A)")
        actions = torch.as_tensor(raw_actions.astype(np.int64))
    elif raw_actions.ndim == 2 and raw_actions.shape[1] > 0:
        actions = torch.as_tensor(_float32(raw_actions))
    else:
        raise ValueError(f"{source}: actions must be integer ids (T,) or float vectors (T, A), got "
                         f"{raw_actions.dtype} of shape {raw_actions.shape}")
    obs = torch.as_tensor(_float32(raw["observations"]))
    rewards = torch.as_tensor(_float32(raw["rewards"])).reshape(-1)
    for name, t in (("observations", obs), ("actions", actions.float()), ("rewards", rewards)):
        if not bool(torch.isfinite(t).all()):
            raise ValueError(f"{source}: {name} contain NaN or inf (or values past float32's range)")
    for key in ("terminals", "timeouts"):
        if not np.isfinite(raw[key]).all():
            raise ValueError(f"{source}: {key} contain NaN or inf; flag a step with 1 (or True), others 0")
    done = (raw["terminals"].reshape(-1) != 0) | (raw["timeouts"].reshape(-1) != 0)
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
    ref = {k: _score(arrays[k], k, source) if k in arrays else None for k in ("ref_min_score", "ref_max_score")}
    return Episodes(obs, actions, rewards, rtg, timesteps, ends_t[episode], starts, ends_t, **ref)

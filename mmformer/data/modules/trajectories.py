"""The trajectory DataModule for decision transformers: D4RL episodes (see
:mod:`mmformer.data.readers.d4rl`) cut into K-step segments. Training batches are segments starting at any step
(uniform over steps, i.e. episodes weighted by length), right-padded at the episode's end, gathered
for a whole batch with one indexing op.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, ClassVar

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from mmformer.data.common.embedded import Builder, build_embedded
from mmformer.data.common.loading import eval_loader
from mmformer.data.common.packing import MarkPacked
from mmformer.data.common.sampling import ResumableDataModule
from mmformer.data.readers.d4rl import Episodes, episodes_from_arrays, read_d4rl
from mmformer.data.shards.dataset import ShardView
from mmformer.data.shards.reading import read_columns
from mmformer.data.spec import ControlSpec, DataSpec, ProvidesDataSpec


def read_episode_shards(uri: str) -> dict[str, np.ndarray]:
    """The D4RL arrays of shards written by ``mmformer prepare d4rl`` (one sample per episode): the episodes
    concatenated, each ending in a terminal flag, with the file's reference scores."""
    view = ShardView(uri, "trajectories", ["observations", "actions", "rewards"])
    eps = read_columns(view, ["observations", "actions", "rewards"])
    lengths = np.array([len(r) for r in eps["rewards"]])
    done = np.zeros(int(lengths.sum()), dtype=bool)
    done[np.cumsum(lengths) - 1] = True  # each sample is one whole episode
    arrays = {k: np.concatenate([np.asarray(x) for x in v]) for k, v in eps.items()}
    arrays.update(terminals=done, timeouts=np.zeros_like(done))
    arrays.update({k: np.asarray(view.info.meta[k]) for k in ("ref_min_score", "ref_max_score")
                   if view.info.meta.get(k) is not None})
    return arrays

def gather_segments(data: Episodes, start: Tensor, context: int) -> dict[str, Tensor]:
    """K-step segments beginning at steps ``start (B,)``, right-padded with zeros past their episode.

    Returns the raw trajectory batch of :class:`~mmformer.tokenizers.trajectory.TrajectoryTokenizer`.
    """
    idx = start[:, None] + torch.arange(context)  # (B, K)
    mask = idx < data.episode_end[start][:, None]  # (B, K) True inside the episode
    idx = torch.where(mask, idx, start[:, None])  # any valid row; zeroed below
    actions = data.actions[idx]
    am = mask if actions.dim() == 2 else mask[..., None]
    return {
        "returns_to_go": data.returns_to_go[idx] * mask,
        "states": data.observations[idx] * mask[..., None],
        "actions": actions * am,
        "timesteps": data.timesteps[idx] * mask,
        "mask": mask,
    }


class SegmentDataset(Dataset):
    """Segments beginning at ``starts``; batched reads (``__getitems__``) gather a whole batch at once.

    Index ``v >= len`` reads ``v % len`` (the virtual indices of :class:`ResumableSampler`).
    """

    def __init__(self, data: Episodes, starts: Tensor, context: int) -> None:
        self.data, self.starts, self.context = data, starts, context

    def __len__(self) -> int:
        return len(self.starts)

    def __getitems__(self, indices: list[int]) -> dict[str, Tensor]:
        start = self.starts[torch.as_tensor(indices, dtype=torch.long) % len(self.starts)]
        return gather_segments(self.data, start, self.context)

    def __getitem__(self, v: int) -> dict[str, Tensor]:
        return {k: t[0] for k, t in self.__getitems__([v]).items()}


def _as_batch(batch: dict[str, Tensor]) -> dict[str, Tensor]:
    return batch  # __getitems__ already built the batch


class TrajectoryData(ResumableDataModule, ProvidesDataSpec):
    """Offline trajectories for decision transformers, plus the gymnasium env they are evaluated in.

    Validation episodes are held out of ``train``. Test and predict batches are episode seeds ``(n,)``: the
    task runs ``eval_episodes`` rollouts per target return.

    Args:
        env_id: gymnasium id of the evaluation environment.
        train: a ``.npz``/``.hdf5`` file with D4RL keys.
        embedded: with ``train`` None, a corpus builder whose ``train`` is such a file
            (:mod:`mmformer.data.common.embedded`; the recipes' is ``corpora.control.ControlCorpus``, a scripted
            controller + ε-random actions).
        data_dir: cache folder of the embedded dataset.
        context: segment length K in timesteps.
        batch_size: segments per batch.
        val_fraction: share of episodes held out for the validation loss (seeded).
        eval_episodes: rollouts per target return in test/predict, on env seeds
            ``TEST_SEED_START + 0, 1, ...`` (:mod:`mmformer.rollout`; validation rollouts use other seeds).
        random_return, expert_return: returns scored 0 and 100 (default: the file's
            ``ref_min_score``/``ref_max_score``, else the dataset's lowest/highest episode return).
        target_returns: the returns a policy is conditioned on at test/predict time, in this environment's scale
            (one ``test/return@<target>`` each); None = the expert return and the midpoint of random and expert.
        val_targets: the returns the validation rollouts condition on; None = the first target return.
        num_workers: DataLoader workers.
        seed: seed of the split and of the data order.
        pack_len: pack each training batch's samples into rows of at most this many tokens (three per
            timestep), each attending only within itself (:mod:`mmformer.data.common.packing`);
            no compute is spent on padding. None = padded batches (the default). Losses are unchanged.
        shards: read the episodes from shards of ``mmformer prepare d4rl`` (a folder or an ``s3://``/``gs://``...
            URI) instead of ``train``; trajectories are small arrays, so they are gathered into memory in ``setup``
            (segments start at any step of any episode), giving the batches of the file.
    """

    # options of earlier versions: a run's old config.yaml names its new place (cli/errors.py)
    renamed_args: ClassVar[dict[str, str]] = {"path": "train",
                                              "episodes_per_level": "embedded.init_args.episodes_per_level"}

    def __init__(
        self,
        env_id: str = "CartPole-v1",
        train: str | None = None,
        embedded: Builder | str | None = None,
        data_dir: str = "data",
        context: int = 20,
        batch_size: int = 64,
        val_fraction: float = 0.05,
        eval_episodes: int = 50,
        random_return: float | None = None,
        expert_return: float | None = None,
        target_returns: list[float] | None = None,
        val_targets: list[float] | None = None,
        num_workers: int = 0,
        seed: int = 0,
        pack_len: int | None = None,
        shards: str | None = None,
    ) -> None:
        super().__init__()
        if context <= 0 or batch_size <= 0 or eval_episodes <= 0 or not 0.0 <= val_fraction < 1.0:
            raise ValueError("context, batch_size and eval_episodes must be positive and val_fraction in [0, 1)")
        from mmformer.rollout import MAX_TEST_EPISODES

        if eval_episodes > MAX_TEST_EPISODES:
            raise ValueError(f"eval_episodes={eval_episodes} would reach the validation seeds; at most "
                             f"{MAX_TEST_EPISODES} (see mmformer.rollout.VAL_SEED_START)")
        if shards is not None and train is not None:
            raise ValueError("give data.init_args.train or data.init_args.shards, not both")
        self.env_id, self.path, self.embedded, self.data_dir = env_id, train, embedded, data_dir
        self.context, self.batch_size, self.val_fraction = context, batch_size, val_fraction
        self.eval_episodes = eval_episodes
        self.random_return, self.expert_return = random_return, expert_return
        self.target_returns = tuple(float(t) for t in target_returns or ())
        self.val_targets = tuple(float(t) for t in val_targets or ())
        self.num_workers, self.seed = num_workers, seed
        self.pack_len, self.shards = pack_len, shards

    def dataset_path(self) -> Path:
        """The file read: ``train``, or the embedded builder's (built on first use)."""
        if self.path is None and self.embedded is None:
            raise ValueError("no trajectories: set data.init_args.train (a D4RL file), data.init_args.embedded (a "
                             "corpus builder) or data.init_args.shards")
        if self.path is None:
            built: dict[str, Any] = build_embedded(self.embedded, self.data_dir)  # type: ignore[arg-type]
            if built.get("env_id", self.env_id) != self.env_id:
                raise ValueError(f"data.init_args.env_id={self.env_id!r} but the embedded builder's episodes are of "
                                 f"{built['env_id']!r}; set them equal")
            self.path = str(built["train"])
        return Path(self.path)

    def prepare_data(self) -> None:
        if self.shards is not None:
            return
        self.dataset_path()  # builds the embedded dataset once (rank 0), before setup on every rank

    def setup(self, stage: str | None = None) -> None:
        if getattr(self, "_ready", False):
            return
        from mmformer.rollout import check_action_space, make_env

        if self.shards is not None:
            path = self.shards
            data = episodes_from_arrays(read_episode_shards(path), path)
        else:
            path = self.dataset_path()
            data = episodes_from_arrays(read_d4rl(path), str(path))
        env = make_env(self.env_id)  # a clear error now if the env is missing
        check_action_space(env.action_space, data.discrete, self.act_dim_of(data), f"dataset {path}")
        space = env.action_space
        self._action_bounds = None if data.discrete else (torch.as_tensor(space.low, dtype=torch.float32),
                                                          torch.as_tensor(space.high, dtype=torch.float32))
        env.close()
        perm = torch.randperm(len(data.starts), generator=torch.Generator().manual_seed(self.seed))
        n_val = int(round(self.val_fraction * len(perm)))
        self.train_episodes = data.select(perm[n_val:].sort().values)
        self.val_episodes = data.select(perm[:n_val].sort().values)
        self.all_episodes = data
        obs = self.train_episodes.observations  # statistics from the training episodes only
        self.state_mean, self.state_std = obs.mean(0), obs.std(0).clamp_min(1e-6)
        returns = data.returns
        lo = self.random_return if self.random_return is not None else data.ref_min_score
        hi = self.expert_return if self.expert_return is not None else data.ref_max_score
        self.ref_returns = (float(returns.min()) if lo is None else lo, float(returns.max()) if hi is None else hi)
        self.dataset_returns = returns
        train_starts = torch.arange(len(self.train_episodes.rewards))  # every step starts a segment
        self.train_set = SegmentDataset(self.train_episodes, train_starts, self.context)
        val = self.val_episodes
        # Validation loss on segments every K/2 steps of the held-out episodes (cheap and fixed).
        val_starts = torch.arange(0, len(val.rewards), max(1, self.context // 2))
        self.val_set = SegmentDataset(val, val_starts, self.context)
        self._ready = True

    @staticmethod
    def act_dim_of(data: Episodes) -> int:
        """Discrete: number of action ids seen (max id + 1); continuous: the action vector size."""
        return int(data.actions.max()) + 1 if data.discrete else data.actions.shape[1]

    @property
    def state_dim(self) -> int:
        return self.train_episodes.observations.shape[1]

    def train_dataloader(self) -> DataLoader:
        collate = _as_batch if self.pack_len is None else MarkPacked(self.pack_len, _as_batch)
        return self._shuffled_loader(self.train_set, collate_fn=collate, drop_last=True)

    def _eval_loader(self, ds: Dataset | Tensor, batch_size: int, collate: Callable = _as_batch) -> DataLoader:
        return eval_loader(ds, batch_size, self.trainer, collate_fn=collate)

    def val_dataloader(self) -> DataLoader:
        return self._eval_loader(self.val_set, self.batch_size)

    def test_dataloader(self) -> DataLoader:
        """Episode seeds ``(n,)`` of this process's share of the ``eval_episodes`` test seeds, in one batch."""
        from mmformer.rollout import TEST_SEED_START

        seeds = TEST_SEED_START + torch.arange(self.eval_episodes)
        return self._eval_loader(seeds, self.eval_episodes, collate=torch.stack)

    predict_dataloader = test_dataloader

    # --- what a task must match -----------------------------------------------------------------
    def data_spec(self) -> DataSpec:
        """``control``: the env, K, the state/action sizes and the training statistics (see :class:`ControlSpec`).

        ``act_dim`` is the number of action ids seen in the training episodes (discrete) or the action
        vector size; continuous actions carry the env's ``(act_dim,)`` bounds.
        """
        train = self.train_episodes
        low, high = self._action_bounds if self._action_bounds is not None else (None, None)
        return DataSpec(control=ControlSpec(
            env_id=self.env_id, context=self.context, state_dim=self.state_dim, act_dim=self.act_dim_of(train),
            discrete=train.discrete, state_mean=self.state_mean, state_std=self.state_std,
            ref_returns=self.ref_returns, dataset_returns=self.dataset_returns, action_low=low, action_high=high,
            target_returns=self.target_returns or _default_targets(self.ref_returns),
            val_targets=self.val_targets))


def _default_targets(ref_returns: tuple[float, float]) -> tuple[float, ...]:
    """The expert return and the midpoint of random and expert, rounded: what a policy is asked to reach."""
    low, high = ref_returns
    return round(high), round((low + high) / 2)

"""Decision transformer (Chen et al. 2021): return-conditioned action prediction with a causal backbone.

Training is supervised on offline segments (cross-entropy for discrete actions, MSE on tanh-squashed
actions for bounded continuous ones). Validation reports the held-out action loss and, every few
epochs, the return of rollouts; test and predict run gymnasium rollouts conditioned on each target
return and report ``test/return@<target>`` and ``test/normalized@<target>``.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any, Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchmetrics import MeanMetric

from mmformer.backbone import BackboneConfig, Encoder
from mmformer.rollout import RolloutResult, rollout
from mmformer.tasks.base import TaskModule
from mmformer.tasks.optim import OptimConfig, build_optimizer
from mmformer.tokenizers.base import TokenBatch
from mmformer.tokenizers.trajectory import TOKENS_PER_STEP, TrajectoryTokenizer


class DecisionTransformer(nn.Module):
    """The plain model: trajectory ``(B, K)`` → action predictions at every state token.

    Args:
        tokenizer: the trajectory tokenizer (holds the state statistics).
        backbone: a causal encoder.
        context: K, the timesteps the model sees (rollouts slide a K-step window).
        head_dropout: dropout before the action head.
    """

    def __init__(
        self, tokenizer: TrajectoryTokenizer, backbone: Encoder, context: int, head_dropout: float = 0.0
    ) -> None:
        super().__init__()
        if not backbone.causal:
            raise ValueError("a decision transformer needs a causal backbone (BackboneConfig(causal=True))")
        self.tokenizer, self.backbone, self.context = tokenizer, backbone, context
        self.discrete, self.act_dim, self.state_dim = tokenizer.discrete_actions, tokenizer.act_dim, tokenizer.state_dim
        self.head = nn.Sequential(nn.Dropout(head_dropout), nn.Linear(backbone.config.dim, self.act_dim))
        # Continuous actions live in [low, high] (the env's bounds, set from the data; checkpointed).
        self.register_buffer("action_low", -torch.ones(self.act_dim))
        self.register_buffer("action_high", torch.ones(self.act_dim))

    def forward(self, traj: dict[str, Tensor]) -> Tensor:
        """Discrete: logits ``(B, K, act_dim)``; continuous: squashed actions in ``[-1, 1]`` ``(B, K, A)``."""
        batch = self.tokenizer(traj)
        # Padding is on the right and attention is causal, so no real token ever sees a padded one:
        # dropping the mask keeps SDPA's is_causal kernel (padded outputs are ignored by the loss).
        hidden = self.backbone(TokenBatch(batch.tokens)).hidden  # (B, 3K, D)
        out = self.head(hidden[:, 1::TOKENS_PER_STEP])  # state tokens predict the action: (B, K, A)
        return out if self.discrete else torch.tanh(out)

    def to_unit(self, actions: Tensor) -> Tensor:
        """Continuous actions → ``[-1, 1]`` by the action bounds."""
        return (actions - self.action_low) / (self.action_high - self.action_low) * 2 - 1

    def from_unit(self, unit: Tensor) -> Tensor:
        return self.action_low + (unit + 1) * 0.5 * (self.action_high - self.action_low)

    @torch.no_grad()
    def act(self, traj: dict[str, Tensor], sample: bool = True, temperature: float = 1.0,
            generator: torch.Generator | None = None) -> Tensor:
        """Action for the last timestep of each window: ``(B,)`` ids or ``(B, A)`` env-scaled vectors.

        Discrete actions are sampled from the softmax (``sample``) or the most likely; continuous
        ones are the deterministic tanh output.
        """
        out = self(traj)[:, -1]  # (B, A)
        if not self.discrete:
            return self.from_unit(out)
        if not sample:
            return out.argmax(-1)
        return torch.multinomial(F.softmax(out / temperature, -1), 1, generator=generator)[:, 0]

    def loss(self, traj: dict[str, Tensor]) -> Tensor:
        """Mean action loss over real timesteps."""
        out, mask = self(traj), traj["mask"]  # (B, K, A), (B, K)
        if self.discrete:
            per_step = F.cross_entropy(out.flatten(0, 1), traj["actions"].flatten().long(), reduction="none")
        else:
            per_step = (out - self.to_unit(traj["actions"].to(out.dtype))).pow(2).mean(-1).flatten()
        w = mask.flatten().to(per_step.dtype)
        return (per_step * w).sum() / w.sum().clamp_min(1.0)


class DecisionTransformerTask(TaskModule):
    """Trains a decision transformer on a :class:`~mmformer.data.trajectories.TrajectoryData` module.

    Args:
        tokenizer: builds the trajectory tokenizer from the width, ``tokenizer(dim)``.
        backbone: encoder sizes; ``causal`` is forced on.
        context: K timesteps per segment (must equal the DataModule's ``context``).
        head_dropout: dropout before the action head.
        target_returns: returns to condition on at test/predict time (one metric each).
        sample_actions: sample discrete actions from the softmax (True) or take the most likely.
        temperature: softmax temperature for sampling.
        val_rollout_every: run ``val_episodes`` rollouts at the first target every this many validations
            (0 = never).
        val_episodes: rollouts per validation.
        optim: AdamW and schedule.
    """

    def __init__(
        self,
        tokenizer: Callable[[int], TrajectoryTokenizer],
        backbone: BackboneConfig | None = None,
        context: int = 20,
        head_dropout: float = 0.0,
        target_returns: list[float] | None = None,
        sample_actions: bool = True,
        temperature: float = 1.0,
        val_rollout_every: int = 1,
        val_episodes: int = 10,
        optim: OptimConfig | None = None,
    ) -> None:
        super().__init__()
        backbone = replace(backbone or BackboneConfig(dim=128, depth=3, num_heads=4), causal=True)
        tok = tokenizer(backbone.dim)
        if not isinstance(tok, TrajectoryTokenizer):
            raise TypeError(f"the decision transformer needs a TrajectoryTokenizer, got {type(tok).__name__}")
        self.model = DecisionTransformer(tok, Encoder(backbone), context, head_dropout)
        self.targets = [float(t) for t in (target_returns or [500.0, 150.0])]
        self.sample_actions, self.temperature = sample_actions, temperature
        self.val_rollout_every, self.val_episodes = val_rollout_every, val_episodes
        self.optim = optim or OptimConfig()
        # (random, expert) returns for normalized scores and the dataset's mean/max return (for the plot).
        self.register_buffer("return_stats", torch.tensor([0.0, 1.0, 0.0, 0.0]))
        self.test_means = nn.ModuleList(MeanMetric() for _ in self.targets)
        self.test_squares = nn.ModuleList(MeanMetric() for _ in self.targets)
        self.val_mean = MeanMetric()
        self._val_runs = 0  # validations so far in this process (sanity checks excluded)

    @staticmethod
    def key(target: float) -> str:
        return f"{target:g}"

    def _dm(self) -> Any:
        dm = getattr(self.trainer, "datamodule", None)
        if dm is None or not hasattr(dm, "env_id"):
            raise ValueError("the decision transformer task needs a TrajectoryData DataModule (env_id, statistics)")
        return dm

    def on_fit_start(self) -> None:
        """Copies the training data's statistics into the model's buffers and checks the shapes fit."""
        from mmformer.data.trajectories import TrajectoryData

        dm = self._dm()
        m = self.model
        if dm.context != m.context:
            raise ValueError(f"data.context={dm.context} but model.context={m.context}; set both to the same K")
        train = dm.train_episodes
        if train.discrete != m.discrete or dm.state_dim != m.state_dim or (
            (TrajectoryData.act_dim_of(train) > m.act_dim) if m.discrete else train.actions.shape[1] != m.act_dim
        ):
            raise ValueError(
                f"the dataset has states of size {dm.state_dim} and {'discrete' if train.discrete else 'continuous'} "
                f"actions ({TrajectoryData.act_dim_of(train)}); the tokenizer is set to state_dim={m.state_dim}, "
                f"act_dim={m.act_dim}, discrete_actions={m.discrete}")
        m.tokenizer.set_state_stats(dm.state_mean.to(self.device), dm.state_std.to(self.device))
        if not m.discrete:
            from mmformer.rollout import make_env

            env = make_env(dm.env_id)
            space = env.action_space
            env.close()
            m.action_low.copy_(torch.as_tensor(space.low, dtype=torch.float32))
            m.action_high.copy_(torch.as_tensor(space.high, dtype=torch.float32))
        returns = dm.dataset_returns
        self.return_stats.copy_(torch.tensor([*dm.ref_returns, float(returns.mean()), float(returns.max())]))

    def forward(self, traj: dict[str, Tensor]) -> Tensor:
        return self.model(traj)

    def training_step(self, batch: dict[str, Tensor], batch_idx: int) -> Tensor:
        loss = self.model.loss(batch)
        self.log("train/loss", loss, prog_bar=True, batch_size=batch["mask"].shape[0])
        return loss

    def validation_step(self, batch: dict[str, Tensor], batch_idx: int) -> None:
        self.log("val/loss", self.model.loss(batch), prog_bar=True, batch_size=batch["mask"].shape[0], sync_dist=True)

    def _seeds(self, n: int, offset: int) -> list[int]:
        """This process's share of ``n`` episode seeds."""
        rank, world = (self.global_rank, self.trainer.world_size) if self._trainer is not None else (0, 1)
        return list(range(offset + rank, offset + n, world))

    def _rollout(self, target: float, seeds: list[int]) -> RolloutResult:
        was_training = self.model.training
        self.model.eval()
        try:
            return rollout(self.model, self._dm().env_id, target, seeds, sample=self.sample_actions,
                           temperature=self.temperature, device=self.device)
        finally:
            self.model.train(was_training)

    def on_validation_epoch_end(self) -> None:
        if self.trainer.sanity_checking:
            return
        self._val_runs += 1
        if self.val_rollout_every <= 0 or self._val_runs % self.val_rollout_every:
            return
        seeds = self._seeds(self.val_episodes, 10_000)  # not the test seeds
        if seeds:
            self.val_mean.update(self._rollout(self.targets[0], seeds).returns.to(self.device))
        self.log(f"val/return@{self.key(self.targets[0])}", self.val_mean, prog_bar=True)

    def test_step(self, seeds: Tensor, batch_idx: int) -> None:
        for i, target in enumerate(self.targets):
            returns = self._rollout(target, seeds.tolist()).returns.to(self.device)
            self.test_means[i].update(returns)
            self.test_squares[i].update(returns**2)

    def on_test_epoch_end(self) -> None:
        means = torch.stack([m.compute() for m in self.test_means]).cpu()  # synced over processes
        stds = (torch.stack([m.compute() for m in self.test_squares]).cpu() - means**2).clamp_min(0).sqrt()
        lo, hi = self.return_stats[0].item(), self.return_stats[1].item()
        for target, mean, std in zip(self.targets, means.tolist(), stds.tolist()):
            k = self.key(target)
            self.log(f"test/return@{k}", mean)
            self.log(f"test/return_std@{k}", std)
            self.log(f"test/normalized@{k}", (mean - lo) / max(hi - lo, 1e-6) * 100)
        for m in (*self.test_means, *self.test_squares):
            m.reset()
        log_dir = self.trainer.log_dir  # a collective under DDP: every rank asks
        if self.trainer.is_global_zero and log_dir is not None:
            fig = plot_return_vs_target(self.targets, means, stds, self.return_stats.cpu(),
                                        Path(log_dir) / "return_vs_target.png")
            for logger in self.loggers:
                if hasattr(logger.experiment, "add_figure"):
                    logger.experiment.add_figure("test/return_vs_target", fig, global_step=self.global_step)

    def predict_step(self, seeds: Tensor, batch_idx: int) -> dict[str, Tensor]:
        out = {}
        for target in self.targets:
            result = self._rollout(target, seeds.tolist())
            out[self.key(target)] = result.returns
            shown = " ".join(f"{r:g}" for r in result.returns.tolist())
            print(f"target {target:g}: mean return {result.returns.mean():.1f} over {len(seeds)} episodes: {shown}")
        return out

    def configure_optimizers(self) -> dict:
        return build_optimizer(self.model, self.optim, self.trainer.estimated_stepping_batches)


def plot_return_vs_target(targets: list[float], means: Tensor, stds: Tensor, stats: Tensor, path: Path) -> Any:
    """Achieved mean return (± std) against the target, with the y = x line and the data's references."""
    from mmformer.viz import plt, save_figure

    order = sorted(range(len(targets)), key=lambda i: targets[i])
    x = [targets[i] for i in order]
    fig, ax = plt.subplots(figsize=(4.5, 4))
    ax.errorbar(x, means[order].tolist(), yerr=stds[order].tolist(), marker="o", capsize=3, label="achieved")
    lo = min(0.0, min(x), float(means.min()))
    hi = max(0.0, max(x), float(means.max()))
    ax.plot([lo, hi], [lo, hi], "k--", lw=0.8, label="target")  # y = x
    for value, label, style in ((stats[2], "dataset mean", ":"), (stats[3], "dataset best", "-.")):
        ax.axhline(float(value), color="gray", ls=style, lw=0.8, label=label)
    ax.set_xlabel("target return")
    ax.set_ylabel("achieved return")
    ax.legend(fontsize=7)
    save_figure(fig, path)
    return fig

"""Decision transformer (Chen et al. 2021): return-conditioned action prediction with a causal backbone.

Training is supervised on offline segments (cross-entropy for discrete actions, MSE on tanh-squashed
actions for bounded continuous ones). Validation reports the held-out action loss and the return of
rollouts on the validation seeds (``val/return@<target>``: every few validations during ``fit``, on every
standalone ``validate`` run — the place to choose a decoding); test and predict run gymnasium rollouts
on the test seeds conditioned on each target return and report ``test/return@<target>`` and
``test/normalized@<target>``. The seed ranges are :data:`mmformer.rollout.VAL_SEED_START` and
:data:`mmformer.rollout.TEST_SEED_START`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, ClassVar

import torch
from pytorch_lightning.trainer.states import TrainerFn
from torch import Tensor, nn
from torchmetrics import MeanMetric

from mmformer.backbone import BackboneConfig
from mmformer.data.common.packing import PACK_KEY, plan_packing, token_counter
from mmformer.data.spec import ControlSpec, DataSpec
from mmformer.losses import action_loss
from mmformer.models.config import decision_transformer_config
from mmformer.models.decision_transformer import DecisionTransformer
from mmformer.rollout import VAL_SEED_START, RolloutResult, rollout
from mmformer.tasks.base import TaskModule
from mmformer.tasks.optim import OptimConfig, build_optimizer, epoch_steps
from mmformer.tokenizers.base import ModalityTokenizer


class DecisionTransformerTask(TaskModule):
    """Trains a :class:`~mmformer.models.DecisionTransformer` on offline trajectories.

    Data: needs ``control`` (:class:`~mmformer.data.spec.ControlSpec`): its context, state size and
    actions must fit the tokenizer; on ``fit`` its state statistics, action bounds and return
    references are copied into the model's and task's buffers (checkpointed, so test and predict
    runs use the trained ones); rollouts run in its ``env_id``.

    Args:
        tokenizer: builds the trajectory tokenizer from the width, ``tokenizer(dim)``; in YAML a
            ``class_path`` (:class:`~mmformer.tokenizers.trajectory.TrajectoryTokenizer`, or any tokenizer
            with its API, see :func:`~mmformer.models.decision_transformer.check_trajectory_tokenizer`)
            with ``init_args`` minus ``dim``. Its ``state_dim``, ``act_dim`` and ``discrete_actions``
            follow the data's ControlSpec when left out (when set, they must fit it: checked when the run starts).
        backbone: encoder sizes; ``causal`` is forced on.
        context: K timesteps per segment; None = the data's ``context`` (set in one place).
        head_dropout: dropout before the action head.
        target_returns: returns to condition on at test/predict time (one metric each); None = the data's
            (:class:`~mmformer.data.spec.ControlSpec` ``target_returns``, in its environment's scale).
        sample_actions: sample discrete actions from the softmax (True) or take the most likely.
        temperature: softmax temperature for sampling (choose it on validation seeds, see the recipe).
        val_rollout_every: during ``fit``, run the validation rollouts every this many validations
            (0 = never); a standalone ``validate`` run always runs them.
        val_episodes: rollouts per validation target, on seeds ``VAL_SEED_START + 0, 1, ...``.
        val_targets: returns the validation rollouts condition on, one ``val/return@<target>`` each
            (None = the data's ``val_targets``, else the first target return).
        optim: AdamW and schedule.
    """

    required_data: ClassVar[tuple[str, ...]] = ("control",)
    model: DecisionTransformer  # built by build_model (or a composite's part: mmformer.tasks.composition)

    def __init__(
        self,
        tokenizer: Callable[[int], ModalityTokenizer],
        backbone: BackboneConfig | None = None,
        context: int | None = None,
        head_dropout: float = 0.0,
        target_returns: list[float] | None = None,
        sample_actions: bool = True,
        temperature: float = 1.0,
        val_rollout_every: int = 1,
        val_episodes: int = 10,
        val_targets: list[float] | None = None,
        optim: OptimConfig | None = None,
    ) -> None:
        super().__init__()
        self._given_targets = [float(t) for t in target_returns or ()]
        self._given_val_targets = [float(t) for t in val_targets or ()]
        self.targets: list[float] = []  # set from the arguments, or the data's when it is bound
        self.val_targets: list[float] = []
        if self._given_targets:
            self._set_targets(None)
        self.sample_actions, self.temperature = sample_actions, temperature
        if val_episodes < 0 or temperature <= 0:
            raise ValueError(f"val_episodes must be >= 0 and temperature > 0, got {val_episodes} and {temperature}")
        self.val_rollout_every, self.val_episodes = val_rollout_every, val_episodes
        self.optim = optim or OptimConfig()
        self._val_runs = 0  # validations so far in this process (sanity checks excluded)
        self._env_id: str | None = None
        self.init_model(decision_transformer_config(tokenizer, backbone, context, head_dropout))
        # (random, expert) returns for normalized scores and the dataset's mean/max return (for the plot).
        self.register_buffer("return_stats", torch.tensor([0.0, 1.0, 0.0, 0.0]))

    def _set_targets(self, c: ControlSpec | None) -> None:
        """The returns conditioned on: the task's own when given, else the data's (in its environment's scale)."""
        data = [float(t) for t in c.target_returns] or [float(c.ref_returns[1])] if c is not None else []
        self.targets = self._given_targets or data
        data_val = [float(t) for t in c.val_targets] if c is not None else []
        self.val_targets = self._given_val_targets or data_val or self.targets[:1]
        self.test_means = nn.ModuleList(MeanMetric() for _ in self.targets).to(self.device)
        self.test_squares = nn.ModuleList(MeanMetric() for _ in self.targets).to(self.device)
        self.val_means = nn.ModuleList(MeanMetric() for _ in self.val_targets).to(self.device)

    @staticmethod
    def key(target: float) -> str:
        return f"{target:g}"

    def bind_data(self, spec: DataSpec, stage: str) -> None:
        """Checks the control data fits the model; on ``fit`` copies its statistics into the buffers."""
        c: ControlSpec = spec.control  # type: ignore[assignment]
        self._set_targets(c)
        m = self.model
        if c.context != m.context:
            raise ValueError(f"data.context={c.context} but model.context={m.context}; leave model.init_args.context "
                             f"out (it follows the data), or set both to the same K")
        if c.discrete != m.discrete or c.state_dim != m.state_dim or (
            c.act_dim > m.act_dim if m.discrete else c.act_dim != m.act_dim
        ):
            raise ValueError(
                f"the dataset has states of size {c.state_dim} and {'discrete' if c.discrete else 'continuous'} "
                f"actions ({c.act_dim}); the tokenizer is set to state_dim={m.state_dim}, "
                f"act_dim={m.act_dim}, discrete_actions={m.discrete}; leave these out of model.init_args.tokenizer."
                f"init_args (they follow the data), or set state_dim: {c.state_dim}, act_dim: {c.act_dim}, "
                f"discrete_actions: {str(c.discrete).lower()}")
        self._env_id = c.env_id
        if stage != "fit":  # test/predict: the checkpoint's buffers (restored after setup) are the trained ones
            return
        m.tokenizer.set_state_stats(c.state_mean.to(self.device), c.state_std.to(self.device))
        if not m.discrete:
            if c.action_low is None or c.action_high is None:
                raise ValueError(f"continuous actions need action_low/action_high in the data's ControlSpec "
                                 f"({c.env_id})")
            m.action_low.copy_(torch.as_tensor(c.action_low, dtype=torch.float32))
            m.action_high.copy_(torch.as_tensor(c.action_high, dtype=torch.float32))
        returns = c.dataset_returns
        self.return_stats.copy_(torch.tensor([*c.ref_returns, float(returns.mean()), float(returns.max())]))

    @property
    def env_id(self) -> str:
        if self._env_id is None:
            raise RuntimeError("DecisionTransformerTask has no environment: run it with a DataModule whose "
                               "data_spec() provides control (a ControlSpec)")
        return self._env_id

    def forward(self, traj: dict[str, Tensor]) -> Tensor:
        return self.model(traj)

    def on_before_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        """A batch the data marked ``pack_len`` gets its packing plan here, on the host (no device sync)."""
        if isinstance(batch, dict) and PACK_KEY in batch:
            batch = dict(batch)
            budget = batch.pop(PACK_KEY)
            batch["packing"] = plan_packing(token_counter(self.model.tokenizer)(batch), budget)[0]
        return batch

    def _loss(self, batch: dict[str, Tensor]) -> Tensor:
        out = self.model(batch, packing=batch.get("packing"))  # (B, K, A)
        return action_loss(out, self.model.action_targets(batch, out.dtype), batch["mask"], self.model.discrete)

    def headline_metric(self) -> tuple[str, str] | None:
        """The mean validation return at the first validation target while every validation rolls out;
        otherwise ``val/loss``."""
        if self.val_episodes > 0 and self.val_rollout_every == 1:
            return f"val/return@{self.key(self.val_targets[0])}", "max"
        return "val/loss", "min"

    def monitor_problem(self, key: str) -> str | None:
        if not key.startswith("val/return@"):
            return None
        if self.val_episodes <= 0 or self.val_rollout_every != 1:
            return (f"{key} is logged only by the validations that roll out (every {self.val_rollout_every}, "
                    f"{self.val_episodes} episodes); set model.init_args.val_rollout_every=1 and val_episodes >= 1")
        if key.removeprefix("val/return@") not in [self.key(t) for t in self.val_targets]:
            return f"the validation rollouts target {[self.key(t) for t in self.val_targets]} (val_targets)"
        return None

    def training_step(self, batch: dict[str, Tensor], batch_idx: int) -> Tensor:
        loss = self._loss(batch)
        self.log("train/loss", loss, prog_bar=True, batch_size=batch["mask"].shape[0])
        return loss

    def validation_step(self, batch: dict[str, Tensor], batch_idx: int) -> None:
        self.log("val/loss", self._loss(batch), prog_bar=True, batch_size=batch["mask"].shape[0], sync_dist=True)

    def _seeds(self, n: int, offset: int) -> list[int]:
        """This process's share of ``n`` episode seeds."""
        rank, world = (self.global_rank, self.trainer.world_size) if self._trainer is not None else (0, 1)
        return list(range(offset + rank, offset + n, world))

    def _rollout(self, target: float, seeds: list[int]) -> RolloutResult:
        was_training = self.model.training
        self.model.eval()
        try:
            return rollout(self.model, self.env_id, target, seeds, sample=self.sample_actions,
                           temperature=self.temperature, device=self.device)
        finally:
            self.model.train(was_training)

    def _rolls_out_now(self) -> bool:
        """Whether this validation runs the rollouts: always in ``validate``, never in the sanity check."""
        if self.trainer.state.fn == TrainerFn.VALIDATING:
            return self.val_episodes > 0
        if self.trainer.sanity_checking:
            return False
        self._val_runs += 1
        return self.val_episodes > 0 and self.val_rollout_every > 0 and self._val_runs % self.val_rollout_every == 0

    def on_validation_epoch_end(self) -> None:
        if not self._rolls_out_now():
            return
        seeds = self._seeds(self.val_episodes, VAL_SEED_START)  # disjoint from the test seeds
        for i, target in enumerate(self.val_targets):
            if seeds:
                self.val_means[i].update(self._rollout(target, seeds).returns.to(self.device))
            self.log(f"val/return@{self.key(target)}", self.val_means[i], prog_bar=i == 0)

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
            from mmformer.viz import log_figure, plot_return_vs_target

            stats = self.return_stats.tolist()
            fig = plot_return_vs_target(self.targets, means, stds, {"dataset mean": stats[2], "dataset best": stats[3]},
                                        Path(log_dir) / "return_vs_target.png")
            log_figure(self.loggers, "test/return_vs_target", fig, self.global_step)

    def predict_step(self, seeds: Tensor, batch_idx: int) -> dict[str, Tensor]:
        out = {}
        for target in self.targets:
            result = self._rollout(target, seeds.tolist())
            out[self.key(target)] = result.returns
            shown = " ".join(f"{r:g}" for r in result.returns.tolist())
            print(f"target {target:g}: mean return {result.returns.mean():.1f} over {len(seeds)} episodes: {shown}")
        return out

    def configure_optimizers(self) -> dict:
        return build_optimizer(self.model, self.optim, self.trainer.estimated_stepping_batches,
                               epoch_steps(self.trainer))

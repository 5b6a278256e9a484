"""DecisionTransformerTask takes its trajectory tokenizer by YAML ``class_path`` like every task, a
plug-in one included; what it must match comes from the data's ControlSpec, checked with a clear error."""

from __future__ import annotations

from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader

from mmformer.cli import main
from mmformer.data.spec import ControlSpec, DataSpec, ProvidesDataSpec
from mmformer.tokenizers.base import ModalityTokenizer, TokenBatch
from mmformer.tokenizers.trajectory import TrajectoryTokenizer

K = 4


class SlotTrajectoryTokenizer(ModalityTokenizer):
    """A plug-in (not a TrajectoryTokenizer subclass): its tokens plus a learned embedding per token kind."""

    def __init__(self, dim: int, state_dim: int = 4, act_dim: int = 2, discrete_actions: bool = True) -> None:
        super().__init__(dim)
        self.inner = TrajectoryTokenizer(dim, state_dim, act_dim, discrete_actions, max_timestep=64)
        self.state_dim, self.act_dim, self.discrete_actions = state_dim, act_dim, discrete_actions
        self.kind = nn.Parameter(torch.zeros(3, dim))  # return, state, action

    def set_state_stats(self, mean: Tensor, std: Tensor) -> None:
        self.inner.set_state_stats(mean, std)

    def forward(self, traj: dict[str, Tensor]) -> TokenBatch:
        out = self.inner(traj)
        k = out.tokens.shape[1] // 3
        return TokenBatch(out.tokens + self.kind.repeat(k, 1), out.mask)


class ControlData(pl.LightningDataModule, ProvidesDataSpec):
    """Random CartPole-shaped segments in memory; test batches are episode seeds."""

    def data_spec(self) -> DataSpec:
        return DataSpec(control=ControlSpec(
            env_id="CartPole-v1", context=K, state_dim=4, act_dim=2, discrete=True, state_mean=torch.zeros(4),
            state_std=torch.full((4,), 0.5), ref_returns=(20.0, 500.0), dataset_returns=torch.tensor([20.0, 60.0])))

    def train_dataloader(self) -> DataLoader:
        g = torch.Generator().manual_seed(0)
        batches = [{"returns_to_go": torch.rand(8, K, generator=g) * 50, "states": torch.randn(8, K, 4, generator=g),
                    "actions": torch.randint(0, 2, (8, K), generator=g), "timesteps": torch.arange(K).repeat(8, 1),
                    "mask": torch.ones(8, K, dtype=torch.bool)} for _ in range(3)]
        return DataLoader(batches, batch_size=None)

    def test_dataloader(self) -> DataLoader:
        return DataLoader(torch.arange(2), batch_size=2)


RECIPE = """
seed_everything: 0
trainer: {max_steps: 3, accelerator: cpu, enable_progress_bar: false,
          enable_model_summary: false, limit_val_batches: 0}
model:
  class_path: mmformer.tasks.DecisionTransformerTask
  init_args:
    tokenizer:
      class_path: %s
      init_args: {state_dim: %d, act_dim: 2, discrete_actions: true}
    backbone: {dim: 16, depth: 1, num_heads: 2}
    context: 4
    target_returns: [30]
    val_episodes: 0
data:
  class_path: tests.tasks.test_decision_transformer_plugin.ControlData
"""


def _config(tmp_path: Path, tokenizer: str, state_dim: int = 4) -> list[str]:
    cfg = tmp_path / "dt.yaml"
    cfg.write_text(RECIPE % (tokenizer, state_dim))
    return ["--config", str(cfg), "--trainer.default_root_dir", str(tmp_path)]


def test_a_plugin_trajectory_tokenizer_is_injected_by_class_path_and_gets_the_data_statistics(tmp_path: Path) -> None:
    fit = main(["fit", *_config(tmp_path, "tests.tasks.test_decision_transformer_plugin.SlotTrajectoryTokenizer")])
    tok = fit.model.model.tokenizer
    assert isinstance(tok, SlotTrajectoryTokenizer) and fit.trainer.global_step == 3
    assert torch.equal(tok.inner.state_std, torch.full((4,), 0.5))  # copied from the ControlSpec on fit
    assert tok.kind.abs().sum() > 0  # trained
    (metrics,) = fit.trainer.test(fit.model, datamodule=fit.datamodule, verbose=False)
    assert metrics["test/return@30"] > 0


def test_a_tokenizer_that_does_not_fit_the_data_says_what_to_set(tmp_path: Path) -> None:
    cli = main(_config(tmp_path, "mmformer.tokenizers.trajectory.TrajectoryTokenizer", state_dim=3), run=False)
    with pytest.raises(ValueError, match="tokenizer is set to state_dim=3.*leave these out of model.init_args.tokenizer"
                                         ".init_args .they follow the data., or set state_dim: 4, act_dim: 2, "
                                         "discrete_actions: true"):
        cli.trainer.fit(cli.model, cli.datamodule)


def test_a_tokenizer_without_the_trajectory_api_is_named() -> None:
    from mmformer.backbone import BackboneConfig
    from mmformer.tasks import DecisionTransformerTask
    from mmformer.tokenizers import TextTokenizer

    with pytest.raises(TypeError, match="TextTokenizer lacks state_dim, act_dim, discrete_actions, set_state_stats"):
        DecisionTransformerTask(lambda d: TextTokenizer(d, 16), BackboneConfig(dim=16, depth=1, num_heads=2), context=4)

"""A new modality plugs in as one class referenced from YAML: a 1-D sensor-signal tokenizer."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader, TensorDataset

from mmformer.cli import main
from mmformer.data.spec import DataSpec, ProvidesDataSpec
from mmformer.layers import SinusoidalPositions
from mmformer.testing import ContractError, check_tokenizer
from mmformer.tokenizers import ModalityTokenizer, TokenBatch, register_tokenizer


# --- the whole plugin: under 40 lines ------------------------------------------------------------
@register_tokenizer("toy_sensor")
class SensorTokenizer(ModalityTokenizer):
    """``(signal (B, T), lengths (B,))`` → one token per frame of ``frame`` samples."""

    def __init__(self, dim: int, frame: int = 8) -> None:
        super().__init__(dim)
        self.frame = frame
        self.proj = nn.Linear(frame, dim)
        self.pos = SinusoidalPositions(dim)

    def forward(self, inputs: tuple[Tensor, Tensor]) -> TokenBatch:
        signal, lengths = inputs
        n = signal.shape[1] // self.frame
        frames = signal[:, : n * self.frame].unflatten(1, (n, self.frame))  # (B, N, frame)
        mask = torch.arange(n, device=signal.device) * self.frame < lengths[:, None]  # (B, N)
        return TokenBatch(self.pos(self.proj(frames.to(self.proj.weight.dtype))), mask)

    def dummy_inputs(self, batch_size: int = 2, pad: int = 0, seed: int = 0) -> tuple[Tensor, Tensor]:
        g = torch.Generator().manual_seed(seed)
        lengths = torch.tensor([4, 2, 3, 1] * batch_size)[:batch_size] * self.frame
        signal = torch.randn(batch_size, 4 * self.frame, generator=g) * (torch.arange(4 * self.frame) < lengths[:, None])
        return nn.functional.pad(signal, (0, pad * self.frame)), lengths
# --------------------------------------------------------------------------------------------------


class SineDataModule(pl.LightningDataModule, ProvidesDataSpec):
    """Noisy sine bursts whose frequency (1 of 3) is the class; variable lengths, zero padded."""

    def data_spec(self) -> DataSpec:
        return DataSpec(class_names=["f1", "f2", "f3"])

    def __init__(self, num_train: int = 384, length: int = 64, batch_size: int = 32) -> None:
        super().__init__()
        self.num_train, self.length, self.batch_size = num_train, length, batch_size

    def _make(self, n: int, seed: int) -> TensorDataset:
        g = torch.Generator().manual_seed(seed)
        labels = torch.randint(0, 3, (n,), generator=g)
        lengths = torch.randint(3, self.length // 8 + 1, (n,), generator=g) * 8
        t = torch.arange(self.length).float()
        phase = torch.rand(n, 1, generator=g) * 2 * math.pi
        signal = torch.sin(2 * math.pi * (labels[:, None] + 1) * t / 16 + phase)
        signal = (signal + 0.3 * torch.randn(n, self.length, generator=g)) * (t < lengths[:, None])
        return TensorDataset(signal, lengths, labels)

    def _loader(self, ds: TensorDataset, shuffle: bool) -> DataLoader:
        collate = lambda rows: ((torch.stack([r[0] for r in rows]), torch.stack([r[1] for r in rows])),  # noqa: E731
                                torch.stack([r[2] for r in rows]))
        return DataLoader(ds, self.batch_size, shuffle=shuffle, collate_fn=collate)

    def train_dataloader(self) -> DataLoader:
        return self._loader(self._make(self.num_train, 0), True)

    def val_dataloader(self) -> DataLoader:
        return self._loader(self._make(96, 1), False)

    test_dataloader = val_dataloader


RECIPE = """
seed_everything: 0
trainer:
  max_epochs: 4
  accelerator: cpu
  devices: 1
  enable_progress_bar: false
  enable_model_summary: false
model:
  class_path: mmformer.tasks.classification.ClassificationTask
  init_args:
    model:
      tokenizer:
        class_path: tests.tokenizers.test_plugin.SensorTokenizer
        init_args: {frame: 8}
      num_classes: 3
      backbone: {dim: 32, depth: 2, num_heads: 2}
    optim: {lr: 0.003, warmup_fraction: 0.1}
data:
  class_path: tests.tokenizers.test_plugin.SineDataModule
"""


def test_sensor_tokenizer_meets_the_contract() -> None:
    out = check_tokenizer(SensorTokenizer(dim=16))
    assert out.mask.sum(dim=1).tolist() == [4, 2]


def test_contract_catches_padding_leak() -> None:
    class Leaky(SensorTokenizer):
        def forward(self, inputs: tuple[Tensor, Tensor]) -> TokenBatch:
            out = super().forward(inputs)  # claims every frame is real
            return TokenBatch(out.tokens, torch.ones_like(out.mask))

    with pytest.raises(ContractError, match="padding"):
        check_tokenizer(Leaky(dim=16))


def test_yaml_class_path_alone_plugs_a_new_modality_into_the_backbone(tmp_path: Path) -> None:
    cfg = tmp_path / "sensor.yaml"
    cfg.write_text(RECIPE)
    cli = main(["fit", "--config", str(cfg), "--trainer.default_root_dir", str(tmp_path)])
    model = cli.model
    assert isinstance(model.model.tokenizer, SensorTokenizer) and model.model.tokenizer.dim == 32
    # Three balanced classes: chance is 1/3; the tiny model must learn the frequencies.
    assert cli.trainer.callback_metrics["val/acc"] > 0.9
    ckpt = Path(cli.trainer.checkpoint_callback.last_model_path)
    assert ckpt.is_file()
    tested = main(["test", "--config", str(cfg), "--trainer.default_root_dir", str(tmp_path), "--ckpt_path", str(ckpt)])
    assert tested.trainer.callback_metrics["test/acc"] > 0.9

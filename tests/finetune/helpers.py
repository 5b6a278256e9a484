"""A small ViT classifier (conv stem with BatchNorm, 3 blocks) for the fine-tuning tests."""

from __future__ import annotations

import torch
from torch import nn

from mmformer.backbone import BackboneConfig, Encoder
from mmformer.heads import ClassificationHead
from mmformer.models.classifier import Classifier
from mmformer.tokenizers.image import ImagePatchTokenizer


class Holder(nn.Module):
    """Stands in for a task: the model sits under ``model``, as in every mmformer task."""

    def __init__(self, dim: int = 64, depth: int = 3, num_classes: int = 5) -> None:
        super().__init__()
        cfg = BackboneConfig(dim=dim, depth=depth, num_heads=4, mlp_ratio=2.0)
        tok = ImagePatchTokenizer(dim, image_size=16, patch_size=4, in_chans=1, stem_channels=[8], cls_token=False)
        self.model = Classifier(tok, Encoder(cfg), ClassificationHead(dim, num_classes, "mean"))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


def images(n: int = 4, seed: int = 0) -> torch.Tensor:
    return torch.randn(n, 1, 16, 16, generator=torch.Generator().manual_seed(seed))

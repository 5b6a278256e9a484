"""Classification of any modality: tokenizer → encoder backbone → pooling head."""

from __future__ import annotations

from typing import Any, Callable

import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchmetrics.classification import MulticlassAccuracy

from mmformer.backbone import BackboneConfig, Encoder
from mmformer.heads import ClassificationHead, Pool
from mmformer.tasks.optim import OptimConfig, build_optimizer
from mmformer.tokenizers.base import ModalityTokenizer


class Classifier(nn.Module):
    """The plain model (usable without Lightning): ``inputs → logits (B, C)``."""

    def __init__(self, tokenizer: ModalityTokenizer, backbone: Encoder, head: ClassificationHead) -> None:
        super().__init__()
        self.tokenizer, self.backbone, self.head = tokenizer, backbone, head

    def forward_features(self, inputs: Any) -> tuple[Tensor, Tensor | None]:
        """inputs → backbone hidden ``(B, N, D)`` and mask ``(B, N)``."""
        out = self.backbone(self.tokenizer(inputs))
        return out.hidden, out.mask

    def forward(self, inputs: Any) -> Tensor:
        return self.head(*self.forward_features(inputs))


class ClassificationTask(pl.LightningModule):
    """Cross-entropy classification over any tokenizer; batches are ``(inputs, labels)``.

    Args:
        tokenizer: builds the tokenizer from the backbone width, ``tokenizer(dim)``; in YAML a
            ``class_path`` with ``init_args`` minus ``dim``.
        num_classes: number of classes C.
        backbone: encoder sizes and layer choices.
        pool: ``cls``, ``mean`` or ``attention`` pooling.
        head_dropout: dropout before the classifier.
        label_smoothing: cross-entropy label smoothing.
        optim: AdamW and warm-up/cosine schedule settings.
    """

    def __init__(
        self,
        tokenizer: Callable[[int], ModalityTokenizer],
        num_classes: int,
        backbone: BackboneConfig | None = None,
        pool: Pool = "mean",
        head_dropout: float = 0.0,
        label_smoothing: float = 0.0,
        optim: OptimConfig | None = None,
    ) -> None:
        super().__init__()
        backbone = backbone or BackboneConfig()
        self.optim = optim or OptimConfig()
        self.label_smoothing = label_smoothing
        self.model = Classifier(
            tokenizer(backbone.dim),
            Encoder(backbone),
            ClassificationHead(backbone.dim, num_classes, pool, head_dropout, num_heads=backbone.num_heads),
        )
        self.num_classes = num_classes
        topk = min(5, num_classes)
        self.metrics = nn.ModuleDict(
            {
                f"{stage}_acc": MulticlassAccuracy(num_classes, average="micro")
                for stage in ("train", "val", "test")
            }
            | {f"test_acc_top{topk}": MulticlassAccuracy(num_classes, top_k=topk, average="micro")}
        )
        self._topk = topk

    def forward(self, inputs: Any) -> Tensor:
        return self.model(inputs)

    def _step(self, batch: tuple[Any, Tensor], stage: str) -> Tensor:
        inputs, labels = batch
        logits = self(inputs)
        loss = F.cross_entropy(logits, labels, label_smoothing=self.label_smoothing if stage == "train" else 0.0)
        acc = self.metrics[f"{stage}_acc"]
        acc(logits, labels)
        bs = labels.shape[0]
        self.log(f"{stage}/loss", loss, prog_bar=stage != "test", batch_size=bs, sync_dist=stage != "train")
        self.log(f"{stage}/acc", acc, prog_bar=True, batch_size=bs)
        if stage == "test":
            top = self.metrics[f"test_acc_top{self._topk}"]
            top(logits, labels)
            self.log(f"test/acc_top{self._topk}", top, batch_size=bs)
        return loss

    def training_step(self, batch: tuple[Any, Tensor], batch_idx: int) -> Tensor:
        return self._step(batch, "train")

    def validation_step(self, batch: tuple[Any, Tensor], batch_idx: int) -> None:
        self._step(batch, "val")

    def test_step(self, batch: tuple[Any, Tensor], batch_idx: int) -> None:
        self._step(batch, "test")

    def predict_step(self, batch: Any, batch_idx: int) -> dict[str, Tensor]:
        inputs = batch[0] if isinstance(batch, (tuple, list)) else batch
        probs = self(inputs).softmax(dim=-1)
        conf, label = probs.max(dim=-1)
        return {"label": label, "prob": conf, "probs": probs}

    def configure_optimizers(self) -> dict:
        return build_optimizer(self.model, self.optim, self.trainer.estimated_stepping_batches)

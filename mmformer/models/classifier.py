"""Classification of any modality as a plain model: tokenizer → encoder backbone → pooling head."""

from __future__ import annotations

from typing import Any, NamedTuple

from torch import Tensor, nn

from mmformer.backbone import BackboneOutput, Encoder
from mmformer.heads import ClassificationHead
from mmformer.tokenizers.base import ModalityTokenizer, TokenBatch


class ClassifierFeatures(NamedTuple):
    output: BackboneOutput  # hidden (B, N, D), mask, attentions (when asked), prefix count and patch grid
    batch: TokenBatch  # the tokenizer's batch (positions, grid) the backbone read


class Classifier(nn.Module):
    """``inputs → logits (B, C)``; usable, testable and exportable without Lightning.

    Args:
        tokenizer: any modality tokenizer of the backbone's width.
        backbone: the encoder.
        head: pooling + linear classifier.
        bidirectional: read the input bidirectionally even through a causal backbone (``prefix_len`` = every
            token: the whole input is a prefix). A multi-task model sets it when its shared backbone is causal;
            a bidirectional backbone reads every input so anyway.
    """

    def __init__(self, tokenizer: ModalityTokenizer, backbone: Encoder, head: ClassificationHead,
                 bidirectional: bool = False) -> None:
        super().__init__()
        self.tokenizer, self.backbone, self.head = tokenizer, backbone, head
        self.bidirectional = bidirectional

    @property
    def num_classes(self) -> int:
        return self.head.num_classes

    def forward_features(self, inputs: Any, need_weights: bool = False) -> ClassifierFeatures:
        """inputs → backbone output (hidden ``(B, N, D)``, mask, attentions) and the tokenizer's batch."""
        batch = self.tokenizer(inputs)
        if self.bidirectional and self.backbone.causal:  # (B, N) tokens all in the prefix: full attention
            return ClassifierFeatures(self.backbone(batch, need_weights=need_weights, prefix_len=batch.seq_len), batch)
        return ClassifierFeatures(self.backbone(batch, need_weights=need_weights), batch)

    def forward_head(self, out: BackboneOutput, batch: TokenBatch | None = None) -> Tensor:
        """Backbone output → logits ``(B, C)``; pooling skips the prefix (CLS) tokens."""
        prefix = batch.num_prefix_tokens if batch is not None else out.num_prefix_tokens
        return self.head(out.hidden, out.mask, prefix)

    def forward(self, inputs: Any) -> Tensor:
        return self.forward_head(*self.forward_features(inputs))

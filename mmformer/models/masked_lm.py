"""A masked language model (BERT style): text tokenizer → bidirectional encoder → MLM head.

The head is BERT's: a dense transform, activation and LayerNorm, then the output projection tied to
the token embedding, plus a per-token bias.
"""

from __future__ import annotations

from torch import Tensor, nn

from mmformer.backbone import BackboneOutput, Encoder
from mmformer.heads import LMHead
from mmformer.layers.mlp import ACTIVATIONS
from mmformer.tokenizers.text import TextTokenizer


class MLMHead(nn.Module):
    """hidden ``(B, T, D)`` → vocabulary logits ``(B, T, V)``: dense → act → LayerNorm → tied projection + bias.

    Args:
        dim: width D.
        embedding: the token embedding the projection is tied to (``(V, D)``).
        act: activation name (:data:`mmformer.layers.mlp.ACTIVATIONS`).
        norm_eps: the LayerNorm's epsilon.
    """

    def __init__(self, dim: int, embedding: nn.Embedding, act: str = "gelu", norm_eps: float = 1e-12) -> None:
        super().__init__()
        if act not in ACTIVATIONS:
            raise ValueError(f"unknown activation {act!r}; choose one of {sorted(ACTIVATIONS)}")
        self.dense = nn.Linear(dim, dim)
        self.act = ACTIVATIONS[act]()
        self.norm = nn.LayerNorm(dim, eps=norm_eps)
        self.decoder = LMHead(dim, embedding.num_embeddings, embedding, bias=True)

    def forward(self, hidden: Tensor) -> Tensor:
        return self.decoder(self.norm(self.act(self.dense(hidden))))


class MaskedLM(nn.Module):
    """``ids (B, T)`` right-padded with the tokenizer's pad id → logits ``(B, T, V)``.

    Args:
        tokenizer: embeds ids; its mask (``ids != pad_id``) keeps pads out of attention.
        backbone: a bidirectional :class:`Encoder`.
        act: the MLM head's activation.
        norm_eps: the MLM head's LayerNorm epsilon.
    """

    def __init__(self, tokenizer: TextTokenizer, backbone: Encoder, act: str = "gelu", norm_eps: float = 1e-12) -> None:
        super().__init__()
        if backbone.causal:
            raise ValueError("a masked LM reads both directions: build its backbone with causal=False")
        self.tokenizer, self.backbone = tokenizer, backbone
        self.head = MLMHead(backbone.config.dim, tokenizer.embed, act, norm_eps)

    def encode(self, ids: Tensor) -> BackboneOutput:
        """ids ``(B, T)`` → the encoder's hidden states ``(B, T, D)`` and mask (a text tower for other tasks)."""
        return self.backbone(self.tokenizer(ids))

    def forward(self, ids: Tensor) -> Tensor:
        return self.head(self.encode(ids).hidden)


__all__ = ["MLMHead", "MaskedLM"]

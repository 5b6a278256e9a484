"""Heads that read the backbone's output: pooling and classification."""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor, nn

from mmformer.layers.attention import CrossAttention

Pool = Literal["cls", "mean", "attention"]


def masked_mean(hidden: Tensor, mask: Tensor | None) -> Tensor:
    """Mean over real tokens: ``(B, N, D)``, ``(B, N)`` → ``(B, D)``."""
    if mask is None:
        return hidden.mean(dim=1)
    w = mask.to(hidden.dtype).unsqueeze(-1)  # (B, N, 1)
    return (hidden * w).sum(dim=1) / w.sum(dim=1).clamp_min(1.0)


class AttentionPool(nn.Module):
    """A learned query cross-attends to the tokens (as in CoCa / timm's attention pool).

    Args:
        dim: token width D.
        num_heads: heads of the pooling attention (D divisible by it).
    """

    def __init__(self, dim: int, num_heads: int = 4) -> None:
        super().__init__()
        self.query = nn.Parameter(torch.zeros(1, 1, dim))
        nn.init.trunc_normal_(self.query, std=0.02)
        self.attn = CrossAttention(dim, num_heads)
        self.norm = nn.LayerNorm(dim)

    def forward(self, hidden: Tensor, mask: Tensor | None) -> Tensor:  # (B, N, D) → (B, D)
        q = self.query.expand(hidden.shape[0], -1, -1)
        return self.norm(self.attn(q, hidden, mask).out[:, 0])


class ClassificationHead(nn.Module):
    """Pools the backbone output and maps it to class logits.

    Args:
        dim: token width D.
        num_classes: number of classes C.
        pool: ``cls`` (first token; the tokenizer must prepend one), ``mean`` over real tokens,
            or ``attention`` (a learned query cross-attending to all tokens).
        dropout: dropout before the linear classifier.
        num_heads: heads of the attention pool.
        pool_norm: LayerNorm after pooling (timm's ``fc_norm``, used with mean pooling).
    """

    def __init__(
        self,
        dim: int,
        num_classes: int,
        pool: Pool = "mean",
        dropout: float = 0.0,
        num_heads: int = 4,
        pool_norm: bool = False,
    ) -> None:
        super().__init__()
        if pool not in ("cls", "mean", "attention"):
            raise ValueError(f"pool must be 'cls', 'mean' or 'attention', got {pool!r}")
        if num_classes < 2:
            raise ValueError(f"num_classes must be at least 2, got {num_classes}")
        self.pool = pool
        self.attn_pool = AttentionPool(dim, num_heads) if pool == "attention" else None
        self.norm = nn.LayerNorm(dim, eps=1e-6) if pool_norm else nn.Identity()
        self.drop = nn.Dropout(dropout)
        self.fc = nn.Linear(dim, num_classes)

    def forward(self, hidden: Tensor, mask: Tensor | None = None, num_prefix_tokens: int = 0) -> Tensor:
        """hidden ``(B, N, D)``, mask ``(B, N)`` → logits ``(B, C)``.

        Mean and attention pooling read only the tokens after the ``num_prefix_tokens`` (CLS) ones.
        """
        if self.pool == "cls":
            if num_prefix_tokens < 1:
                raise ValueError("pool='cls' needs a tokenizer that prepends a CLS token (e.g. cls_token: true)")
            pooled = hidden[:, 0]
        else:
            hidden = hidden[:, num_prefix_tokens:]
            mask = None if mask is None else mask[:, num_prefix_tokens:]
            pooled = masked_mean(hidden, mask) if self.pool == "mean" else self.attn_pool(hidden, mask)  # type: ignore[misc]
        return self.fc(self.drop(self.norm(pooled)))

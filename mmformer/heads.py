"""Every head that reads the backbone's output, in one place.

- :class:`Pooler`: ``(B, N, D)`` → ``(B, D)`` by CLS, masked mean or attention pooling (a learned
  query cross-attending to the tokens); prefix tokens (CLS, registers) are skipped by mean and
  attention pooling. The one pooling implementation: classification and both contrastive towers use it.
- :class:`ClassificationHead`: pooling, optional norm, dropout, linear classifier.
- :class:`ProjectionHead`: the bias-free linear map of a contrastive tower into the joint space.
- :class:`LMHead`: the output projection of a text decoder, tied to the target embedding.
- :class:`CTCHead`: frame-wise label scores over an encoder's states (blank included).
- :class:`ActionHead`: a decision transformer's action logits / squashed continuous actions.

The single-matrix heads subclass :class:`torch.nn.Linear`: same parameters, same initialization
(so seeded runs draw the same numbers) and the same state_dict keys as the plain layers they replace.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor, nn

from mmformer.layers.attention import CrossAttention

Pool = Literal["cls", "mean", "attention", "last"]
POOLS = ("cls", "mean", "attention", "last")


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


class Pooler(nn.Module):
    """``(B, N, D)`` hidden + mask → ``(B, D)``.

    Args:
        dim: token width D.
        pool: ``cls`` (the first token; the tokenizer must prepend one), ``mean`` over the real
            tokens, ``attention`` (a learned query cross-attending to them), or ``last``: the last
            real token of each right-padded row (CLIP's end-of-text token under causal attention).
        num_heads: heads of the attention pool.
    """

    def __init__(self, dim: int, pool: Pool = "mean", num_heads: int = 4) -> None:
        super().__init__()
        if pool not in POOLS:
            raise ValueError(f"pool must be one of {POOLS}, got {pool!r}")
        self.pool = pool
        self.attn = AttentionPool(dim, num_heads) if pool == "attention" else None

    def forward(self, hidden: Tensor, mask: Tensor | None = None, num_prefix_tokens: int = 0) -> Tensor:
        """Mean and attention pooling read only the tokens after the ``num_prefix_tokens`` ones."""
        if self.pool == "cls":
            if num_prefix_tokens < 1:
                raise ValueError("pool='cls' needs a tokenizer that prepends a CLS token (e.g. cls_token: true)")
            return hidden[:, 0]
        if self.pool == "last":  # (B,) index of each row's last real token
            last = (mask.sum(1) - 1 if mask is not None
                    else torch.full(hidden.shape[:1], hidden.shape[1] - 1, device=hidden.device))
            return hidden[torch.arange(hidden.shape[0], device=hidden.device), last]
        hidden = hidden[:, num_prefix_tokens:]  # (B, N - P, D)
        mask = None if mask is None else mask[:, num_prefix_tokens:]
        return masked_mean(hidden, mask) if self.attn is None else self.attn(hidden, mask)


class ClassificationHead(nn.Module):
    """Pools the backbone output and maps it to class logits.

    Args:
        dim: token width D.
        num_classes: number of classes C.
        pool: ``cls``, ``mean`` or ``attention`` (see :class:`Pooler`).
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
        if num_classes < 2:
            raise ValueError(f"num_classes must be at least 2, got {num_classes}")
        self.pool = Pooler(dim, pool, num_heads)
        self.norm = nn.LayerNorm(dim, eps=1e-6) if pool_norm else nn.Identity()
        self.drop = nn.Dropout(dropout)
        self.fc = nn.Linear(dim, num_classes)

    @property
    def num_classes(self) -> int:
        return self.fc.out_features

    def forward(self, hidden: Tensor, mask: Tensor | None = None, num_prefix_tokens: int = 0) -> Tensor:
        """hidden ``(B, N, D)``, mask ``(B, N)`` → logits ``(B, C)``."""
        return self.fc(self.drop(self.norm(self.pool(hidden, mask, num_prefix_tokens))))


class ProjectionHead(nn.Linear):
    """A contrastive tower's map into the joint embedding space: ``(B, D)`` → ``(B, E)``, no bias (CLIP).

    Args:
        dim: pooled width D.
        embed_dim: joint embedding width E.
    """

    def __init__(self, dim: int, embed_dim: int) -> None:
        super().__init__(dim, embed_dim, bias=False)

    def forward(self, pooled: Tensor, normalize: bool = False) -> Tensor:  # type: ignore[override]
        x = super().forward(pooled)  # (B, E)
        return nn.functional.normalize(x, dim=-1) if normalize else x


class LMHead(nn.Linear):
    """A text decoder's output projection: hidden ``(B, T, D)`` → next-token logits ``(B, T, V)``, no bias.

    Args:
        dim: decoder width D.
        vocab_size: V.
        tied_embedding: the target embedding whose table becomes this weight (Press & Wolf 2017);
            None = an own weight, truncated-normal(0.02) initialized.
        bias: a per-token logit bias, zero-initialized (BERT's MLM decoder, Marian's final_logits_bias).
    """

    def __init__(self, dim: int, vocab_size: int, tied_embedding: nn.Embedding | None = None,
                 bias: bool = False) -> None:
        super().__init__(dim, vocab_size, bias=False)  # draws its init even when tied: seeded runs stay equal
        if bias:  # added after the init above, so bias=False models draw the same numbers as before
            self.bias = nn.Parameter(torch.zeros(vocab_size))
        if tied_embedding is not None:
            if tuple(tied_embedding.weight.shape) != (vocab_size, dim):
                raise ValueError(f"the tied embedding is {tuple(tied_embedding.weight.shape)}, "
                                 f"the output projection needs ({vocab_size}, {dim})")
            self.weight = tied_embedding.weight
        else:
            nn.init.trunc_normal_(self.weight, std=0.02)


class CTCHead(nn.Linear):
    """Frame-wise label scores for CTC (Graves et al. 2006): encoder states ``(B, S, D)`` → logits ``(B, S, V)``.

    The blank label is one of the V ids (mmformer uses the pad id); :func:`mmformer.losses.ctc_loss`
    trains it and :func:`mmformer.decoding.ctc.ctc_greedy_decode` decodes it.

    Args:
        dim: encoder width D.
        vocab_size: V, blank included.
    """

    def __init__(self, dim: int, vocab_size: int) -> None:
        super().__init__(dim, vocab_size)


class ActionHead(nn.Module):
    """A decision transformer's action head over the state tokens' hidden states.

    Args:
        dim: backbone width D.
        act_dim: number of discrete actions, or size A of a continuous action vector.
        discrete: logits (True) or tanh-squashed actions in ``[-1, 1]`` (False).
        dropout: dropout before the linear map.
    """

    def __init__(self, dim: int, act_dim: int, discrete: bool, dropout: float = 0.0) -> None:
        super().__init__()
        self.discrete = discrete
        self.drop = nn.Dropout(dropout)
        self.fc = nn.Linear(dim, act_dim)

    def forward(self, hidden: Tensor) -> Tensor:
        """``(B, K, D)`` → discrete logits ``(B, K, A)``, or continuous actions in ``[-1, 1]`` ``(B, K, A)``."""
        out = self.fc(self.drop(hidden))
        return out if self.discrete else torch.tanh(out)


__all__ = ["ActionHead", "AttentionPool", "CTCHead", "ClassificationHead", "LMHead", "POOLS", "Pool", "Pooler",
           "ProjectionHead", "masked_mean"]

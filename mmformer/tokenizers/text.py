"""Token ids → :class:`TokenBatch`: the embedding half of text tokenization.

Strings become ids with :class:`~mmformer.tokenizers.sentencepiece_vocab.SentencePieceVocab`
(no gradients); this module embeds them and owns the positional scheme.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
from torch import Tensor, nn

from mmformer.layers.positions import LearnedPositions, SinusoidalPositions
from mmformer.tokenizers.base import ModalityTokenizer, TokenBatch, register_tokenizer
from mmformer.tokenizers.sentencepiece_vocab import PAD_ID

TextPositions = Literal["learned", "sinusoidal", "rope", "none"]


@register_tokenizer("text")
class TextTokenizer(ModalityTokenizer):
    """``ids (B, T)`` long, right-padded with ``pad_id`` → ``TokenBatch(tokens (B, T, D), mask (B, T))``.

    Args:
        dim: token width D.
        vocab_size: rows of the embedding table (the sentencepiece model's size); None only in a task's
            config, which fills it from its data's vocabulary.
        max_len: longest sequence the position table accepts (learned / sinusoidal).
        positions: ``learned`` or ``sinusoidal`` absolute positions added here; ``rope`` adds none
            here and leaves positions to the backbone's rotary attention (set ``backbone.rope: true``);
            ``none`` adds nothing.
        pad_id: the padding id; its embedding row stays zero and its positions are masked out.
        scale: multiply embeddings by sqrt(D) (Vaswani et al., with sinusoidal positions).
        dropout: dropout on the embedded tokens.
        embed_norm: LayerNorm over the embedded tokens after the positions are added (BERT).
        norm_eps: that LayerNorm's epsilon.
        init_std: std of the embedding's initial weights; None = D^-0.5 with ``scale`` (fairseq: the scaled
            tokens have unit size, like sinusoidal positions), else 0.02 (GPT/BERT).
    """

    def __init__(
        self,
        dim: int,
        vocab_size: int | None = None,
        max_len: int = 512,
        positions: TextPositions = "learned",
        pad_id: int = PAD_ID,
        scale: bool = False,
        dropout: float = 0.0,
        embed_norm: bool = False,
        norm_eps: float = 1e-12,
        init_std: float | None = None,
    ) -> None:
        super().__init__(dim)
        if vocab_size is None:
            raise ValueError("TextTokenizer needs vocab_size: a task fills it from its data's vocabulary (leave it "
                             "out of the recipe); set it when building the tokenizer by hand")
        if positions not in ("learned", "sinusoidal", "rope", "none"):
            raise ValueError(f"positions must be learned, sinusoidal, rope or none, got {positions!r}")
        if not 0 <= pad_id < vocab_size:
            raise ValueError(f"pad_id {pad_id} is outside the vocabulary of {vocab_size}")
        self.vocab_size, self.pad_id, self.max_len, self.kind = vocab_size, pad_id, max_len, positions
        self.embed = nn.Embedding(vocab_size, dim, padding_idx=pad_id)
        std = init_std if init_std is not None else (dim**-0.5 if scale else 0.02)
        nn.init.trunc_normal_(self.embed.weight, std=std)
        with torch.no_grad():
            self.embed.weight[pad_id].zero_()
        self.pos: nn.Module | None = {
            "learned": lambda: LearnedPositions(max_len, dim),
            "sinusoidal": lambda: SinusoidalPositions(dim, max_len),
        }.get(positions, lambda: None)()
        self.scale = math.sqrt(dim) if scale else 1.0
        self.drop = nn.Dropout(dropout)
        if embed_norm:  # only registered when asked, so existing models keep their state_dict keys
            self.norm = nn.LayerNorm(dim, eps=norm_eps)

    def forward(self, ids: Tensor, offset: int | Tensor = 0, mask: bool = True) -> TokenBatch:
        """Embeds ``ids (B, T)``; ``offset`` is the position of the first column (KV-cached decoding).

        ``mask=False`` returns ``mask=None`` (all tokens real) — right for a causal decoder fed
        right-padded rows, where no real token can see a later pad, and it keeps SDPA's
        ``is_causal`` kernel.
        """
        if ids.dim() != 2 or ids.dtype not in (torch.long, torch.int32, torch.int64):
            raise ValueError(f"TextTokenizer takes integer ids of shape (B, T), got {ids.dtype} {tuple(ids.shape)}")
        if ids.numel() and isinstance(offset, int) and offset == 0 and not torch.compiler.is_compiling():  # once per sequence, not per step
            lo, hi = int(ids.min()), int(ids.max())  # one sync per batch, not per token; catches vocab mismatches
            if lo < 0 or hi >= self.vocab_size:
                raise ValueError(f"token id {hi if hi >= self.vocab_size else lo} is outside the embedding table "
                                 f"of {self.vocab_size}; the tokenizer's vocab_size must match the sentencepiece model")
        x = self.embed(ids) * self.scale  # (B, T, D)
        if self.pos is not None:
            x = self.pos(x, offset)
        if hasattr(self, "norm"):
            x = self.norm(x)
        # RoPE needs no positions here: attention counts them from 0, or from the KV cache's length.
        return TokenBatch(self.drop(x), (ids != self.pad_id) if mask else None, needs_rope=self.kind == "rope")

    def token_counts(self, ids: Tensor) -> Tensor:
        """Real tokens per right-padded row of ``ids (B, T)``: ``(B,)`` long (what packing plans with)."""
        return (ids != self.pad_id).sum(1)

    def dummy_inputs(self, batch_size: int = 2, pad: int = 0, seed: int = 0) -> Tensor:
        g = torch.Generator().manual_seed(seed)
        lengths = [5 + 2 * i for i in range(batch_size)]
        ids = torch.full((batch_size, max(lengths) + pad), self.pad_id, dtype=torch.long)
        for i, n in enumerate(lengths):
            ids[i, :n] = torch.randint(0, self.vocab_size, (n,), generator=g).clamp_min(1)
            ids[i, :n][ids[i, :n] == self.pad_id] = (self.pad_id + 1) % self.vocab_size
        return ids.to(self.embed.weight.device)

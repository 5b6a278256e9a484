"""The shared transformer backbone: ``Block``, ``Encoder`` (bidirectional or causal) and ``Decoder``.

A backbone reads a :class:`~mmformer.tokenizers.TokenBatch` and nothing else, so one instance can
serve any tokenizer of the right width.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Literal, NamedTuple

import torch
from torch import Tensor, nn

from mmformer.layers.attention import CrossAttention, SelfAttention, check_heads
from mmformer.layers.kv_cache import DecoderCache, LayerCache
from mmformer.layers.mlp import MlpSpec, make_mlp
from mmformer.layers.norms import NormSpec, make_norm
from mmformer.layers.packing import DocumentMask, Kernel, document_mask
from mmformer.layers.positions import RotaryEmbedding
from mmformer.tokenizers.base import TokenBatch


@dataclass
class BackboneConfig:
    """Size and layer choices of a backbone; names, not classes, so it round-trips through YAML."""

    dim: int = 256  # model width D
    depth: int = 6  # number of blocks
    num_heads: int = 8  # query heads H (D must be divisible by H)
    num_kv_heads: int | None = None  # key/value heads: None = H, 1 = multi-query, else grouped-query
    mlp_ratio: float = 4.0  # MLP hidden width = mlp_ratio * D
    mlp: MlpSpec = "gelu"  # "gelu" | "swiglu" | "mlp_<act>" (gelu_tanh, quick_gelu, silu, relu) | dotted import path
    norm: NormSpec = "layernorm"  # "layernorm" | "rmsnorm" | dotted import path of a (dim) class
    norm_eps: float = 1e-6  # epsilon of named norms (timm ViT: 1e-6; torch.nn.Transformer: 1e-5)
    norm_position: Literal["pre", "post"] = "pre"  # pre-norm (GPT-2/ViT) or post-norm (Vaswani et al.)
    bias: bool = True  # biases in attention and MLP projections
    qk_norm: NormSpec | None = None  # norm applied per head to q and k (e.g. "rmsnorm"), or None
    rope: bool = False  # rotary positions on q/k inside self-attention
    rope_base: float = 10000.0  # RoPE frequency base
    causal: bool = False  # Encoder only: causal self-attention (decoder-only / decision transformer)
    memory_dim: int | None = None  # Decoder only: width of the cross-attended memory (None = D)
    drop_path: float = 0.0  # stochastic depth rate of the last block; earlier blocks scale linearly
    attn_drop: float = 0.0  # dropout on attention weights (0 keeps the fused kernels)
    proj_drop: float = 0.0  # dropout after attention/MLP output projections
    packed_attention: Kernel = "auto"  # packed rows only: "flex" (CUDA), "sdpa" (dense mask), "auto" = flex on CUDA


class BlockOutput(NamedTuple):
    hidden: Tensor  # (B, N, D)
    self_weights: Tensor | None  # (B, H, N, S) when need_weights
    cross_weights: Tensor | None  # (B, H, N, S_mem) when need_weights and cross-attending


class Block(nn.Module):
    """One transformer layer: self-attention, optional cross-attention, MLP; each a residual branch.

    The sublayers are injected; ``norm_position`` picks pre-norm ``x + f(norm(x))`` or the
    original paper's post-norm ``norm(x + f(x))``.
    """

    def __init__(
        self,
        dim: int,
        self_attn: SelfAttention,
        mlp: nn.Module,
        norm_layer: Callable[[int], nn.Module],
        cross_attn: CrossAttention | None = None,
        drop_path: float = 0.0,
        norm_position: Literal["pre", "post"] = "pre",
    ) -> None:
        super().__init__()
        if norm_position not in ("pre", "post"):
            raise ValueError(f"norm_position must be 'pre' or 'post', got {norm_position!r}")
        self.prenorm = norm_position == "pre"
        self.norm1, self.attn = norm_layer(dim), self_attn
        self.norm_cross = norm_layer(dim) if cross_attn is not None else None
        self.cross_attn = cross_attn
        self.norm2, self.mlp = norm_layer(dim), mlp
        if drop_path > 0:
            from timm.layers import DropPath  # imported here: `import timm.layers` loads timm's data stack

            self.drop_path: nn.Module = DropPath(drop_path)
        else:
            self.drop_path = nn.Identity()

    def forward(
        self,
        x: Tensor,
        mask: Tensor | DocumentMask | None = None,
        *,
        positions: Tensor | None = None,
        memory: Tensor | None = None,
        memory_mask: Tensor | DocumentMask | None = None,
        cache: LayerCache | None = None,
        need_weights: bool = False,
        prefix_len: int = 0,
    ) -> BlockOutput:
        """x: ``(B, N, D)``, mask ``(B, N)``; memory ``(B, S, D_mem)`` with memory_mask ``(B, S)``;
        ``prefix_len``: leading positions every query sees (causal self-attention with a bidirectional prefix).

        Each branch is pre-norm ``x + f(norm(x))`` or post-norm ``norm(x + f(x))``.
        """
        h = self.norm1(x) if self.prenorm else x
        sa = self.attn(h, mask, positions=positions, cache=None if cache is None else cache.self_kv,
                       need_weights=need_weights, prefix_len=prefix_len)
        x = (x + self.drop_path(sa.out)) if self.prenorm else self.norm1(x + self.drop_path(sa.out))

        cross_weights = None
        if self.cross_attn is not None:
            if memory is None:
                raise ValueError("this block cross-attends: pass memory=(B, S, D_mem)")
            h = self.norm_cross(x) if self.prenorm else x  # type: ignore[misc]
            ca = self.cross_attn(h, memory, memory_mask, cache=None if cache is None else cache.cross_kv,
                                 need_weights=need_weights)
            x = ((x + self.drop_path(ca.out)) if self.prenorm
                 else self.norm_cross(x + self.drop_path(ca.out)))  # type: ignore[misc]
            cross_weights = ca.weights

        h = self.norm2(x) if self.prenorm else x
        m = self.mlp(h)
        x = (x + self.drop_path(m)) if self.prenorm else self.norm2(x + self.drop_path(m))
        return BlockOutput(x, sa.weights, cross_weights)


class BackboneOutput(NamedTuple):
    """What heads and decoders read: the hidden states with the layout of the tokens they came from.

    It is also the memory a decoder cross-attends to (``hidden`` + ``mask``).
    """

    hidden: Tensor  # (B, N, D) final hidden states (after the final norm in pre-norm stacks)
    mask: Tensor | None  # (B, N) the input mask, passed through for heads and memories; None = all real
    attentions: tuple[Tensor, ...] | None = None  # per block (B, H, N, N) self-attention weights
    cross_attentions: tuple[Tensor, ...] | None = None  # per block (B, H, N, S) cross-attention weights
    num_prefix_tokens: int = 0  # leading non-sequence tokens (CLS, registers) of the input TokenBatch
    grid: tuple[int, int] | None = None  # (H, W) patch grid of the input TokenBatch, patches after the prefix
    documents: Tensor | None = None  # (R, L) packed rows only: the sample of each token, -1 in row tails

    def repeat(self, n: int) -> BackboneOutput:
        """Each row ``n`` times in a row (``(B*n, N, D)``): beam search's view of a memory.

        Attention weights are dropped (they are for plots, not for decoding).
        """
        mask = None if self.mask is None else self.mask.repeat_interleave(n, 0)
        return self._replace(hidden=self.hidden.repeat_interleave(n, 0), mask=mask, attentions=None,
                             cross_attentions=None)


class _Stack(nn.Module):
    """Blocks plus final norm; the shared body of Encoder and Decoder."""

    def __init__(self, config: BackboneConfig, causal: bool, cross: bool) -> None:
        super().__init__()
        c = self.config = config
        self.causal = causal
        if c.depth <= 0:
            raise ValueError(f"depth must be positive, got {c.depth}")
        norm = lambda d: make_norm(c.norm, d, c.norm_eps)  # noqa: E731
        qk_norm = (lambda d: make_norm(c.qk_norm, d, c.norm_eps)) if c.qk_norm else None  # noqa: E731
        _, head_dim = check_heads(c.dim, c.num_heads, c.num_kv_heads)  # before RoPE needs head_dim
        rope = RotaryEmbedding(head_dim, c.rope_base) if c.rope else None
        rates = torch.linspace(0, c.drop_path, c.depth).tolist()
        self.blocks = nn.ModuleList(
            Block(
                c.dim,
                SelfAttention(c.dim, c.num_heads, c.num_kv_heads, causal=causal, bias=c.bias, rope=rope,
                              qk_norm=qk_norm, attn_drop=c.attn_drop, proj_drop=c.proj_drop),
                make_mlp(c.mlp, c.dim, int(c.dim * c.mlp_ratio), bias=c.bias, drop=c.proj_drop),
                norm,
                CrossAttention(c.dim, c.num_heads, c.num_kv_heads, kv_dim=c.memory_dim, bias=c.bias,
                               qk_norm=qk_norm, attn_drop=c.attn_drop, proj_drop=c.proj_drop) if cross else None,
                drop_path=rate,
                norm_position=c.norm_position,
            )
            for rate in rates
        )
        # Pre-norm leaves the residual stream unnormalized, so the stack ends with a norm.
        self.norm = norm(c.dim) if c.norm_position == "pre" else nn.Identity()
        self.apply(_init_weights)

    def new_cache(self, capacity: int = 64, static: bool = False) -> DecoderCache:
        """An empty cache for step-by-step decoding with ``forward(..., cache=cache)``; ``static``: fixed
        shapes, ``capacity`` positions at most, :meth:`DecoderCache.advance` after each step."""
        return DecoderCache(len(self.blocks), capacity, static, next(self.parameters()).device)

    def _run(
        self,
        batch: TokenBatch,
        memory: Tensor | None,
        memory_mask: Tensor | None,
        cache: DecoderCache | None,
        need_weights: bool,
        memory_documents: Tensor | None = None,
        prefix_len: int = 0,
    ) -> BackboneOutput:
        if not isinstance(batch, TokenBatch):
            raise TypeError(f"the backbone takes a TokenBatch, got {type(batch).__name__}")
        if batch.dim != self.config.dim:
            raise ValueError(f"tokens have width {batch.dim} but the backbone's dim is {self.config.dim}")
        if batch.needs_rope and not self.config.rope:
            raise ValueError("the tokenizer leaves positions to rotary attention (positions: rope) but this "
                             "backbone has rope: false, so it would see no token order; set the backbone's "
                             "rope: true, or give the tokenizer learned or sinusoidal positions")
        mask: Tensor | DocumentMask | None = batch.mask
        cross_mask: Tensor | DocumentMask | None = memory_mask
        if (batch.documents is None) != (memory_documents is None) and memory is not None:
            raise ValueError("pack the decoder's tokens and its memory together (documents on both or neither)")
        if prefix_len and (not self.causal or batch.documents is not None):
            raise ValueError(f"prefix_len={prefix_len} needs a causal stack over padded rows (prefix-LM); this one is "
                             f"{'packed' if self.causal else 'bidirectional'}")
        if batch.documents is not None:  # packed rows: one mask per forward, shared by every block
            kernel = self.config.packed_attention
            mask = document_mask(batch.documents, batch.documents, causal=self.causal, kernel=kernel)
            if memory_documents is not None:
                cross_mask = document_mask(batch.documents, memory_documents, causal=False, kernel=kernel)
        x, self_w, cross_w = batch.tokens, [], []
        for i, block in enumerate(self.blocks):
            x, sw, cw = block(x, mask, positions=batch.positions, memory=memory, memory_mask=cross_mask,
                              cache=None if cache is None else cache.layers[i], need_weights=need_weights,
                              prefix_len=prefix_len)
            self_w.append(sw)
            cross_w.append(cw)
        return BackboneOutput(
            self.norm(x),
            batch.mask,
            tuple(self_w) if need_weights else None,  # type: ignore[arg-type]
            tuple(cross_w) if need_weights and memory is not None else None,  # type: ignore[arg-type]
            batch.num_prefix_tokens,
            batch.grid,
            batch.documents,
        )


def _init_weights(m: nn.Module) -> None:
    """ViT/GPT-style init: truncated normal(0.02) linear weights, zero biases."""
    if isinstance(m, nn.Linear):
        nn.init.trunc_normal_(m.weight, std=0.02)
        if m.bias is not None:
            nn.init.zeros_(m.bias)


class Encoder(_Stack):
    """Self-attention blocks over one token sequence; bidirectional unless ``config.causal``.

    Args:
        config: sizes and layer choices.
    """

    def __init__(self, config: BackboneConfig) -> None:
        super().__init__(config, causal=config.causal, cross=False)

    def forward(
        self, batch: TokenBatch, *, cache: DecoderCache | None = None, need_weights: bool = False,
        prefix_len: int = 0,
    ) -> BackboneOutput:
        """batch.tokens ``(B, N, D)`` → hidden ``(B, N, D)``. A cache is only meaningful when causal.

        ``prefix_len`` (causal stacks): the first ``prefix_len`` positions (counted from the start of the
        cache, when one holds earlier positions) are seen by every query: a bidirectional prefix ahead
        of causal positions, the prefix-LM mask (T5, PaLI, LLaVA's image tokens). 0 = plain causal.
        """
        if cache is not None and not self.causal:
            raise ValueError("a KV cache needs causal attention: set config.causal=True")
        return self._run(batch, None, None, cache, need_weights, prefix_len=prefix_len)


class Decoder(_Stack):
    """Causal self-attention plus cross-attention to a memory (an encoder's output), in every block.

    Args:
        config: sizes and layer choices; ``config.causal`` is ignored (a decoder is always causal)
            and ``config.memory_dim`` sets the memory width.
    """

    def __init__(self, config: BackboneConfig) -> None:
        super().__init__(config, causal=True, cross=True)

    def forward(
        self,
        batch: TokenBatch,
        memory: Tensor,
        memory_mask: Tensor | None = None,
        *,
        cache: DecoderCache | None = None,
        need_weights: bool = False,
        memory_documents: Tensor | None = None,
    ) -> BackboneOutput:
        """Decodes ``batch.tokens (B, T, D)`` against ``memory (B, S, D_mem)``.

        With a cache, ``batch`` holds only the new positions; their mask covers only them, and RoPE
        positions continue from ``cache.length``. Packed rows (``batch.documents``) need the packed
        memory's ``memory_documents (R, S)``: each target document attends to its own source only.
        """
        return self._run(batch, memory, memory_mask, cache, need_weights, memory_documents)

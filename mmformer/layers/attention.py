"""Multi-head attention through ``scaled_dot_product_attention``: self and cross, GQA, KV cache, RoPE.

Shapes: B batch, T query length, S key length, H query heads, Hkv key/value heads, hd head width.
Masks are bool with True = attend (a real token), matching :class:`~mmformer.tokenizers.TokenBatch`.
"""

from __future__ import annotations

from typing import Callable, NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mmformer.layers.kv_cache import KVCache, StaticKV
from mmformer.layers.packing import DocumentMask
from mmformer.layers.positions import RotaryEmbedding, apply_rotary


class AttentionOutput(NamedTuple):
    out: Tensor  # (B, T, D)
    weights: Tensor | None  # (B, H, T, S) when asked for, else None


def check_heads(dim: int, num_heads: int, num_kv_heads: int | None) -> tuple[int, int]:
    """Validates a head layout and returns ``(num_kv_heads, head_dim)``."""
    if num_heads <= 0 or dim % num_heads:
        raise ValueError(f"dim {dim} is not divisible by num_heads {num_heads}")
    kv = num_heads if num_kv_heads is None else num_kv_heads
    if kv <= 0 or num_heads % kv:
        raise ValueError(f"num_heads {num_heads} is not divisible by num_kv_heads {kv}")
    return kv, dim // num_heads


def check_mask(mask: Tensor | DocumentMask | None, batch: int, length: int, what: str = "mask") -> None:
    """A key-padding mask must be bool ``(B, S)``; anything else is a user error worth naming.

    A :class:`~mmformer.layers.packing.DocumentMask` (packed rows) is built by the backbone and passes."""
    if mask is None or isinstance(mask, DocumentMask):
        return
    if mask.dtype != torch.bool:
        raise ValueError(f"{what} must be a bool tensor (True = real token), got dtype {mask.dtype}")
    if tuple(mask.shape) != (batch, length):
        raise ValueError(f"{what} has shape {tuple(mask.shape)} but the sequence needs ({batch}, {length})")


def _build_mask(mask: Tensor | None, causal: bool, t: int, s: int, device: torch.device,
                prefix_len: int = 0) -> tuple[Tensor | None, bool]:
    """Combines a key-padding mask ``(B, S)`` and causality into SDPA's arguments.

    Returns ``(attn_mask, is_causal)``. Causal attention with no padding and T == S uses the
    kernel's ``is_causal`` (no materialized mask). A single new query (KV-cache decoding)
    may see every cached key, so it needs only the padding mask. ``prefix_len`` (causal only): the
    first ``prefix_len`` keys are seen by every query (a prefix-LM's bidirectional prefix).
    """
    attn_mask = None if mask is None else mask[:, None, None, :]  # (B, 1, 1, S)
    if not causal or (prefix_len >= s and t == s):  # a prefix over every key: bidirectional, no triangle
        return attn_mask, False
    if attn_mask is None and prefix_len == 0:
        if t == s:
            return None, True
        if t == 1:
            return None, False
    # Queries are the last t of s positions: query i sees keys 0 .. s - t + i (and the prefix keys).
    tri = torch.ones(t, s, dtype=torch.bool, device=device).tril(diagonal=s - t)
    if prefix_len:
        tri[:, :prefix_len] = True
    if attn_mask is None:
        return tri, False
    # A padded query can lose every key (left padding); letting it see itself keeps its row
    # finite on every kernel, so no NaN reaches real tokens through later layers.
    own = torch.arange(s, device=device)[None, :] == torch.arange(s - t, s, device=device)[:, None]  # (T, S)
    return (attn_mask & tri) | own, False


def attend(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    mask: Tensor | DocumentMask | None = None,
    causal: bool = False,
    dropout_p: float = 0.0,
    need_weights: bool = False,
    prefix_len: int = 0,
) -> AttentionOutput:
    """Scaled dot-product attention over heads.

    Args:
        q: ``(B, H, T, hd)``; k, v: ``(B, Hkv, S, hd)`` with H a multiple of Hkv.
        mask: ``(B, S)`` bool key-padding mask, True = real key; None = all real; or the
            :class:`~mmformer.layers.packing.DocumentMask` of packed rows (causality included in it).
        causal: queries are the last T of S positions and see only keys at or before them.
        need_weights: use the explicit softmax path and return the ``(B, H, T, S)`` weights.
        prefix_len: with ``causal``, the first ``prefix_len`` keys are visible to every query (prefix-LM:
            a bidirectional prefix, causal after it); 0 = plain causal.
    Returns:
        ``AttentionOutput(out (B, H, T, hd), weights)``.
    """
    if isinstance(mask, DocumentMask):
        if need_weights:
            raise ValueError("attention weights are not returned for packed rows; plot a padded batch instead")
        if prefix_len:
            raise ValueError("a bidirectional prefix is not supported on packed rows; pad the batch instead")
        return AttentionOutput(mask.attend(q, k, v, dropout_p), None)
    t, s = q.shape[2], k.shape[2]
    attn_mask, is_causal = _build_mask(mask, causal, t, s, q.device, prefix_len)
    gqa = q.shape[1] != k.shape[1]
    if not need_weights:
        out = F.scaled_dot_product_attention(
            q, k, v, attn_mask=attn_mask, dropout_p=dropout_p, is_causal=is_causal, enable_gqa=gqa
        )
        return AttentionOutput(out, None)
    if gqa:  # the explicit path repeats K/V per query group
        rep = q.shape[1] // k.shape[1]
        k, v = k.repeat_interleave(rep, dim=1), v.repeat_interleave(rep, dim=1)
    scores = (q @ k.transpose(-2, -1)) * q.shape[-1] ** -0.5  # (B, H, T, S)
    if is_causal:
        attn_mask = torch.ones(t, s, dtype=torch.bool, device=q.device).tril()
    if attn_mask is not None:
        scores = scores.masked_fill(~attn_mask, float("-inf"))
    weights = scores.softmax(dim=-1).nan_to_num(0.0)  # an all-masked row attends to nothing
    out = F.dropout(weights, dropout_p, training=dropout_p > 0) @ v
    return AttentionOutput(out, weights)


def _merge_heads(x: Tensor) -> Tensor:  # (B, H, T, hd) → (B, T, H*hd)
    return x.transpose(1, 2).flatten(2)


def _fold_rows(x: Tensor, g: int) -> Tensor:  # (B, H, T, X) → (B/g, H, g*T, X): g consecutive rows become one
    if g == 1:
        return x
    b, h, t, d = x.shape
    return x.reshape(b // g, g, h, t, d).transpose(1, 2).reshape(b // g, h, g * t, d)


def _unfold_rows(x: Tensor, g: int) -> Tensor:  # (B/g, H, g*T, X) → (B, H, T, X), the inverse of _fold_rows
    if g == 1:
        return x
    m, h, gt, d = x.shape
    return x.reshape(m, h, g, gt // g, d).transpose(1, 2).reshape(m * g, h, gt // g, d)


class _MultiHead(nn.Module):
    """What self- and cross-attention share: head layout, per-head q/k norms, output projection."""

    def __init__(
        self, dim: int, num_heads: int, num_kv_heads: int | None, bias: bool,
        qk_norm: Callable[[int], nn.Module] | None, attn_drop: float, proj_drop: float,
    ) -> None:
        super().__init__()
        self.num_kv_heads, self.head_dim = check_heads(dim, num_heads, num_kv_heads)
        self.num_heads, self.attn_drop = num_heads, attn_drop
        self.q_norm = qk_norm(self.head_dim) if qk_norm else nn.Identity()
        self.k_norm = qk_norm(self.head_dim) if qk_norm else nn.Identity()
        self.proj = nn.Linear(dim, dim, bias=bias)
        # Identity when off: an eval-mode Dropout still costs a module call and an op, in every layer of every step
        self.proj_drop = nn.Dropout(proj_drop) if proj_drop > 0 else nn.Identity()

    def _attend(self, q: Tensor, k: Tensor, v: Tensor, mask: Tensor | DocumentMask | None, causal: bool,
                need_weights: bool, prefix_len: int = 0, groups: int = 1) -> AttentionOutput:
        """Heads ``(B, H, T, hd)`` against ``(B / groups, Hkv, S, hd)`` → projected ``(B, T, D)`` output.

        ``groups`` > 1: each key row serves ``groups`` consecutive query rows, whose T queries are attended as
        ``groups * T`` queries of that row (the same math per query, the keys read once)."""
        drop = self.attn_drop if self.training else 0.0
        out, weights = attend(_fold_rows(q, groups), k, v, mask, causal, drop, need_weights, prefix_len)
        out = _unfold_rows(out, groups)
        weights = None if weights is None else _unfold_rows(weights, groups)
        return AttentionOutput(self.proj_drop(self.proj(_merge_heads(out))), weights)


class SelfAttention(_MultiHead):
    """Multi-head self-attention with one fused qkv projection.

    Args:
        dim: model width D.
        num_heads: query heads H.
        num_kv_heads: key/value heads (None: H; 1: multi-query; else grouped-query).
        causal: each position attends only to itself and earlier positions.
        bias: biases on the qkv and output projections.
        rope: rotary embedding applied to q and k (shared across layers), or None.
        qk_norm: norm factory applied per head to q and k (``factory(hd)``), or None.
        attn_drop: dropout on attention weights (0 keeps the fused CPU/GPU kernels).
        proj_drop: dropout after the output projection.
    """

    def __init__(
        self,
        dim: int,
        num_heads: int,
        num_kv_heads: int | None = None,
        *,
        causal: bool = False,
        bias: bool = True,
        rope: RotaryEmbedding | None = None,
        qk_norm: Callable[[int], nn.Module] | None = None,
        attn_drop: float = 0.0,
        proj_drop: float = 0.0,
    ) -> None:
        super().__init__(dim, num_heads, num_kv_heads, bias, qk_norm, attn_drop, proj_drop)
        self.causal, self.rope = causal, rope
        # Output features are [q heads | k heads | v heads], each head hd wide (timm's layout when Hkv == H).
        self.qkv = nn.Linear(dim, (num_heads + 2 * self.num_kv_heads) * self.head_dim, bias=bias)

    def forward(
        self,
        x: Tensor,
        mask: Tensor | DocumentMask | None = None,
        *,
        positions: Tensor | None = None,
        cache: KVCache | None = None,
        need_weights: bool = False,
        prefix_len: int = 0,
    ) -> AttentionOutput:
        """Attends ``x: (B, T, D)`` to itself (plus cached past positions).

        Args:
            mask: ``(B, T)`` key-padding mask of these T positions (the cache remembers earlier ones), or
                the :class:`~mmformer.layers.packing.DocumentMask` of packed rows (no cache).
            positions: ``(T,)`` or ``(B, T)`` integer positions for RoPE; default ``past + arange(T)``.
            cache: the layer's :class:`KVCache` while decoding step by step; it is updated in place.
            prefix_len: causal attention only: the first ``prefix_len`` positions (of the cache plus ``x``) are
                seen by every query, so they attend to each other bidirectionally (prefix-LM).
        """
        b, t, _ = x.shape
        if prefix_len and not self.causal:
            raise ValueError("a bidirectional prefix only means something in causal attention (causal=True)")
        check_mask(mask, b, t)
        qkv = self.qkv(x).view(b, t, -1, self.head_dim).transpose(1, 2)  # (B, H + 2Hkv, T, hd)
        q, k, v = qkv.split([self.num_heads, self.num_kv_heads, self.num_kv_heads], dim=1)
        q, k = self.q_norm(q), self.k_norm(k)
        if self.rope is not None:
            if positions is None:  # past: an int, or a static cache's 0-d position tensor (no sync)
                past = (cache.position if cache.static else cache.length) if cache is not None else 0
                positions = past + torch.arange(t, device=x.device)
            cos, sin = self.rope(positions)
            q, k = apply_rotary(q, cos, sin), apply_rotary(k, cos, sin)
        causal = self.causal
        if cache is not None and isinstance(mask, DocumentMask):
            raise ValueError("a KV cache decodes padded rows; packed rows are for training (drop the cache)")
        if cache is not None:
            k, v, mask = cache.append(k, v, mask)
            causal = causal and not cache.static  # a static cache's mask already hides the future slots
        return self._attend(q, k, v, mask, causal, need_weights, prefix_len)


class CrossAttention(_MultiHead):
    """Multi-head attention from queries ``x`` to a memory (encoder output, latents, ...).

    Args:
        dim: query width D (also the output width).
        num_heads, num_kv_heads, bias, qk_norm, attn_drop, proj_drop: as in :class:`SelfAttention`.
        kv_dim: memory width (None: D).
    """

    def __init__(
        self,
        dim: int,
        num_heads: int,
        num_kv_heads: int | None = None,
        *,
        kv_dim: int | None = None,
        bias: bool = True,
        qk_norm: Callable[[int], nn.Module] | None = None,
        attn_drop: float = 0.0,
        proj_drop: float = 0.0,
    ) -> None:
        super().__init__(dim, num_heads, num_kv_heads, bias, qk_norm, attn_drop, proj_drop)
        self.q = nn.Linear(dim, dim, bias=bias)
        self.kv = nn.Linear(kv_dim or dim, 2 * self.num_kv_heads * self.head_dim, bias=bias)  # fused [k | v]

    def forward(
        self,
        x: Tensor,
        memory: Tensor,
        memory_mask: Tensor | DocumentMask | None = None,
        *,
        cache: StaticKV | None = None,
        need_weights: bool = False,
    ) -> AttentionOutput:
        """x: ``(B, T, D)`` attends to ``memory: (B, S, kv_dim)`` with ``memory_mask: (B, S)``; or to a memory
        of ``B / g`` rows, each shared by ``g`` consecutive rows of ``x`` (beam search's hypotheses of one source).

        With a cache, the memory's K/V are projected at the first call and reused afterwards.
        """
        b, t, _ = x.shape
        mb = memory.shape[0]
        check_mask(memory_mask, mb, memory.shape[1], "memory_mask")
        if b != mb and (b % mb or isinstance(memory_mask, DocumentMask)):
            raise ValueError(f"{b} query rows cannot share a memory of {mb} rows: pass as many memory rows, or a "
                             f"divisor of them (g consecutive query rows per memory row, as beam search does)")
        q = self.q_norm(self.q(x).view(b, t, self.num_heads, self.head_dim).transpose(1, 2))  # (B, H, T, hd)
        if cache is not None and cache.k is not None:
            k, v = cache.k, cache.v
        else:
            s = memory.shape[1]
            kv = self.kv(memory).view(memory.shape[0], s, 2 * self.num_kv_heads, self.head_dim).transpose(1, 2)
            k, v = kv.split(self.num_kv_heads, dim=1)  # (B, Hkv, S, hd) each
            k = self.k_norm(k)
            if cache is not None:
                cache.k, cache.v = k, v
        # Grouped rows (beam search: the K hypotheses of a source are rows b*K .. b*K+K-1): the memory's K/V are
        # projected, cached and read once per source instead of once per hypothesis.
        return self._attend(q, k, v, memory_mask, False, need_weights, groups=b // mb)  # type: ignore[arg-type]

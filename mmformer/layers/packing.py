"""Packed sequences: several samples ("documents") per row, isolated by per-document attention masks.

A right-padded batch ``(B, N, ...)`` spends every layer's projections and MLP on its padding. A
:class:`Packing` places each sample's real tokens contiguously in one of ``R`` rows of width ``L``
(``R * L`` close to the real token count), and :class:`DocumentMask` lets a token attend only to
tokens of its own document — causally where the attention is causal — and, in a decoder's
cross-attention, only to its own source document. Tokenizers still run on the padded batch, so
absolute positions (learned, sinusoidal, timestep embeddings) restart per document for free; RoPE
reads the per-document positions of :meth:`Packing.positions`.

Kernel choice (what each candidate can do, torch 2.11; the timings are in docs/benchmarks.md):

- ``torch.nn.attention.flex_attention`` with a ``create_block_mask`` document mask compiles on CPU
  (inductor) but has **no backward on CPU** ("FlexAttention does not support backward on CPU"), so it
  cannot train there; it is the kernel of choice on CUDA, where the block mask skips whole
  128x128 tiles that belong to other documents and the compiled kernel is FlashAttention-class.
- Nested jagged tensors through SDPA failed on CPU (``aten::stride`` is not implemented for the
  jagged layout in the backward), and they cannot express a decoder's causal self-attention plus
  cross-attention to a *differently* jagged memory in one kernel call on every device.
- A dense bool block-diagonal mask ``(R, 1, L, L)`` through SDPA works everywhere and is exact. Its
  attention costs the same order as the padded batch's at short rows, and attention is a small part of
  a step at small widths (d 256: ~4·L·d flops a token against ~12·d² in the projections and MLP). The
  savings of packing are in every projection and MLP, which no longer run on padding.

So ``kernel="auto"`` takes FlexAttention on CUDA (compiled once, block masks built once per forward
and shared by every layer) and the dense mask with SDPA elsewhere; both give the padded path's
numbers (the tests compare losses and gradients to 1e-5).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal, NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor

Kernel = Literal["auto", "sdpa", "flex"]


class Packing(NamedTuple):
    """Where each sample of a right-padded batch lives in the packed rows.

    Built on the host by :func:`mmformer.data.common.packing.plan_packing` (a deterministic function
    of the sample lengths), so building it costs the device nothing.
    """

    row: Tensor  # (B,) long: the packed row of each sample
    start: Tensor  # (B,) long: the sample's first column in that row
    length: Tensor  # (B,) long: the sample's real tokens (a right-padded prefix of its padded row)
    rows: int  # R
    width: int  # L: columns per packed row (the fullest row)

    def to(self, device: torch.device | str) -> Packing:
        return self._replace(row=self.row.to(device), start=self.start.to(device), length=self.length.to(device))

    def _slots(self, n: int) -> tuple[Tensor, Tensor]:
        """For the padded ``(B, n)`` grid: flat packed slot of each position, and whether it is real."""
        col = torch.arange(n, device=self.row.device)  # (n,)
        real = col[None, :] < self.length[:, None]  # (B, n)
        slot = (self.row * self.width + self.start)[:, None] + col[None, :]  # (B, n)
        dump = self.rows * self.width  # padding goes to one extra slot that is dropped
        return torch.where(real, slot, dump), real

    def _sources(self, n: int) -> Tensor:
        """``(R * L,)`` flat padded index ``b * n + j`` feeding each packed slot; ``B * n`` (a zero row) for tails."""
        slot, _ = self._slots(n)
        b = self.row.shape[0]
        src = torch.full((self.rows * self.width + 1,), b * n, dtype=torch.long, device=slot.device)
        src.scatter_(0, slot.flatten(), torch.arange(b * n, device=slot.device))
        return src[:-1]

    def pack(self, x: Tensor) -> Tensor:
        """Right-padded ``(B, n, ...)`` → packed ``(R, L, ...)``; row tails are zero (pad id 0 for ids)."""
        b, n = x.shape[:2]
        flat = torch.cat([x.flatten(0, 1), x.new_zeros(1, *x.shape[2:])])  # (B*n + 1, ...)
        return flat[self._sources(n)].view(self.rows, self.width, *x.shape[2:])

    def unpack(self, y: Tensor, n: int) -> Tensor:
        """Packed ``(R, L, ...)`` → right-padded ``(B, n, ...)`` (zeros where a sample has no token)."""
        slot, _ = self._slots(n)
        flat = torch.cat([y.flatten(0, 1), y.new_zeros(1, *y.shape[2:])])  # (R*L + 1, ...)
        return flat[slot.flatten()].view(slot.shape[0], n, *y.shape[2:])

    def documents(self) -> Tensor:
        """``(R, L)`` long: the sample index of each packed token, -1 in row tails."""
        n = int(self.width)  # no sample is wider than a row
        ids = torch.arange(self.row.shape[0], device=self.row.device)[:, None].expand(-1, n)
        return self.pack((ids + 1)[..., None])[..., 0] - 1

    def positions(self) -> Tensor:
        """``(R, L)`` long: each token's position inside its own sample (0 in row tails)."""
        n = int(self.width)
        col = torch.arange(n, device=self.row.device)[None, :].expand(self.row.shape[0], -1)
        return self.pack(col[..., None])[..., 0]


_compiled_flex: Any = None


def _flex() -> Any:
    """flex_attention compiled once (uncompiled it runs a slow reference path)."""
    global _compiled_flex
    if _compiled_flex is None:
        from torch.nn.attention.flex_attention import flex_attention

        _compiled_flex = torch.compile(flex_attention, dynamic=False)
    return _compiled_flex


@dataclass
class DocumentMask:
    """Which keys each query of a packed row may see: its own document (causally when ``causal``).

    Exactly one of ``dense`` (``(R, 1, Lq, Lk)`` bool for SDPA) and ``block`` (a FlexAttention
    ``BlockMask``) is set. Queries in row tails see one key (themselves in self-attention, every key in
    cross-attention) so their rows stay finite; nothing reads their outputs.
    """

    dense: Tensor | None = None
    block: Any = None

    def attend(self, q: Tensor, k: Tensor, v: Tensor, dropout_p: float = 0.0) -> Tensor:
        """``q (R, H, Lq, hd)``, ``k, v (R, Hkv, Lk, hd)`` → ``(R, H, Lq, hd)``."""
        gqa = q.shape[1] != k.shape[1]
        if self.block is not None:
            if dropout_p:
                raise ValueError("FlexAttention has no attention dropout: set attn_drop: 0 (or kernel='sdpa')")
            return _flex()(q, k, v, block_mask=self.block, enable_gqa=gqa)
        return F.scaled_dot_product_attention(q, k, v, attn_mask=self.dense, dropout_p=dropout_p, enable_gqa=gqa)


def document_mask(q_docs: Tensor, k_docs: Tensor, causal: bool, kernel: Kernel = "auto") -> DocumentMask:
    """The attention mask of packed rows.

    Args:
        q_docs: ``(R, Lq)`` document id of each query, -1 in row tails.
        k_docs: ``(R, Lk)`` document id of each key, -1 in row tails. For self-attention pass the
            same tensor as ``q_docs``; for cross-attention the memory's (ids are sample indices, so a
            target sees exactly its own source).
        causal: a query also sees only keys at or before its column (self-attention only).
        kernel: ``flex`` (CUDA), ``sdpa`` (a dense bool mask, any device) or ``auto`` (flex on CUDA).
    """
    if q_docs.dim() != 2 or k_docs.dim() != 2 or q_docs.shape[0] != k_docs.shape[0]:
        raise ValueError(f"document ids must be (R, Lq) and (R, Lk) with the same R, got {tuple(q_docs.shape)} "
                         f"and {tuple(k_docs.shape)}")
    if kernel not in ("auto", "sdpa", "flex"):
        raise ValueError(f"kernel must be auto, sdpa or flex, got {kernel!r}")
    self_attn = q_docs is k_docs
    if kernel == "flex" or (kernel == "auto" and q_docs.is_cuda):
        from torch.nn.attention.flex_attention import create_block_mask

        def mask_mod(b: Tensor, h: Tensor, qi: Tensor, ki: Tensor) -> Tensor:
            same = (q_docs[b, qi] == k_docs[b, ki]) & (k_docs[b, ki] >= 0)
            return same & (ki <= qi) if causal else same

        r, lq, lk = q_docs.shape[0], q_docs.shape[1], k_docs.shape[1]
        return DocumentMask(block=create_block_mask(mask_mod, r, None, lq, lk, device=q_docs.device))
    allowed = (q_docs[:, :, None] == k_docs[:, None, :]) & (k_docs >= 0)[:, None, :]  # (R, Lq, Lk)
    if causal:
        allowed &= torch.ones(q_docs.shape[1], k_docs.shape[1], dtype=torch.bool, device=q_docs.device).tril()
    tail = (q_docs < 0)[:, :, None]  # (R, Lq, 1)
    if self_attn:
        own = torch.eye(q_docs.shape[1], k_docs.shape[1], dtype=torch.bool, device=q_docs.device)
        allowed |= tail & own
    else:
        allowed |= tail
    return DocumentMask(dense=allowed[:, None])


__all__ = ["DocumentMask", "Kernel", "Packing", "document_mask"]

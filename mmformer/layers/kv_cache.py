"""Caches for incremental decoding: growing self-attention K/V and once-computed cross-attention K/V."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor


def attention_window(written: int, capacity: int) -> int:
    """Slots a static cache's attention reads when ``written`` positions hold keys: the next power of two, at
    least 16, at most ``capacity``.

    Reading the whole preallocated capacity every step doubles the keys and values read on average (beam
    search's caches are large: 4 hypotheses x 8 sources x 4 layers x 129 slots is 34 MB per step); a window of
    powers of two reads at most twice what is written, with a handful of shapes per run (16, 32, 64, ...), so a
    compiled step keeps a few graphs, not one per step."""
    return min(capacity, max(16, 1 << max(written - 1, 0).bit_length()))


class KVCache:
    """Keys and values of the positions decoded so far, for one self-attention layer.

    Storage is preallocated and doubled when full, so appending one step is amortized O(1)
    instead of the O(T) copy of a ``torch.cat`` per step. Shapes: k, v ``(B, Hkv, T, hd)``;
    the optional key-padding mask ``(B, T)`` (True = real) is kept beside them.
    """

    def __init__(self, capacity: int = 64, position: Tensor | None = None) -> None:
        self.capacity = capacity
        self.length = 0
        # Static mode (``position``: a 0-d long tensor, shared by a stack's layers): storage is exactly
        # ``capacity`` positions, each step writes at ``position`` in place and attention reads the whole
        # buffer with a validity mask, so every step has the same shapes (torch.compile, CUDA graphs).
        # ``DecoderCache.advance`` moves position and length on, outside any compiled region.
        self.position = position
        self.window = capacity  # static: the slots attention reads (``attention_window``), set by DecoderCache.advance
        self._k: Tensor | None = None
        self._v: Tensor | None = None
        self._mask: Tensor | None = None

    def _grow(self, like: Tensor, needed: int) -> None:
        cap = max(self.capacity, needed)
        while cap < needed:
            cap *= 2
        if self._k is not None and cap <= self._k.shape[2]:
            return
        if self._k is not None:
            cap = max(cap, 2 * self._k.shape[2])
        b, h, _, d = like.shape
        k = like.new_empty(b, h, cap, d)
        v = like.new_empty(b, h, cap, d)
        if self._k is not None:
            k[:, :, : self.length] = self._k[:, :, : self.length]
            v[:, :, : self.length] = self._v[:, :, : self.length]  # type: ignore[index]
        self._k, self._v = k, v

    def append(self, k: Tensor, v: Tensor, mask: Tensor | None = None) -> tuple[Tensor, Tensor, Tensor | None]:
        """Adds ``t`` new positions and returns all keys, values and mask so far.

        Args:
            k, v: ``(B, Hkv, t, hd)`` keys and values of the new positions.
            mask: ``(B, t)`` bool key-padding mask of the new positions, or None (all real).
        Returns:
            ``(k, v, mask)`` covering ``length`` positions; mask is None while every key is real.
        """
        if self.position is not None:
            return self._write_static(k, v, mask)
        t = k.shape[2]
        end = self.length + t
        self._grow(k, end)
        # narrow + copy_: the same write as slice assignment, without Python's multi-dim indexing per layer per step
        self._k.narrow(2, self.length, t).copy_(k)  # type: ignore[union-attr]
        self._v.narrow(2, self.length, t).copy_(v)  # type: ignore[union-attr]
        if mask is not None or self._mask is not None:
            if mask is None:
                mask = torch.ones(k.shape[0], t, dtype=torch.bool, device=k.device)
            past = self._mask if self._mask is not None else torch.ones(
                k.shape[0], self.length, dtype=torch.bool, device=k.device
            )
            self._mask = torch.cat([past[:, : self.length], mask], dim=1)
        self.length = end
        return self._k.narrow(2, 0, end), self._v.narrow(2, 0, end), self._mask  # type: ignore[union-attr]

    @property
    def static(self) -> bool:
        return self.position is not None

    def _write_static(self, k: Tensor, v: Tensor, mask: Tensor | None) -> tuple[Tensor, Tensor, Tensor]:
        """Writes one position at ``self.position``; returns the buffers' first ``window`` slots and their
        ``(B, window)`` validity.

        The validity mask (positions written so far, this one included) also carries causality for the
        single new query, so attention runs it as non-causal. Unwritten slots hold zeros (finite), so
        their masked scores are exactly 0 after softmax and cannot turn into NaN.
        """
        if k.shape[2] != 1 or mask is not None:
            raise ValueError(f"a static KV cache takes one new position per step and no padding mask (decoding), "
                             f"got {k.shape[2]} positions{' and a mask' if mask is not None else ''}; "
                             f"use a DecoderCache(static=False) to prefill several positions")
        if self._k is None:
            b, h, _, d = k.shape
            self._k, self._v = k.new_zeros(b, h, self.capacity, d), k.new_zeros(b, h, self.capacity, d)
        at = self.position.view(1)  # type: ignore[union-attr]
        self._k.index_copy_(2, at, k)
        self._v.index_copy_(2, at, v)  # type: ignore[union-attr]
        w = self.window  # a Python int: a compiled step specializes on it (a few graphs, see attention_window)
        valid = torch.arange(w, device=k.device) <= self.position  # (window,)
        return self._k.narrow(2, 0, w), self._v.narrow(2, 0, w), valid.expand(k.shape[0], -1)  # type: ignore[union-attr]

    def copy_rows(self, src: Tensor, dst: Tensor) -> None:
        """Overwrites batch rows ``dst (n,)`` with rows ``src (n,)``, filled positions only, in place.

        Beam search's cheap reorder: a surviving beam keeps its row and only a beam duplicated into a
        dropped one is copied (a few rows per step instead of the whole cache). ``src`` and ``dst`` must
        be disjoint (a row read is never a row written).
        """
        if self._k is None or src.numel() == 0:
            return
        n = self.length
        for buf in (self._k, self._v):
            part = buf[:, :, :n]  # (B, Hkv, n, hd) view: the copy skips the unused capacity
            part.index_copy_(0, dst, part.index_select(0, src))  # type: ignore[union-attr]
        if self._mask is not None:
            self._mask.index_copy_(0, dst, self._mask.index_select(0, src))


@dataclass
class StaticKV:
    """Cross-attention keys/values ``(B, Hkv, S, hd)`` of the memory, computed at the first step."""

    k: Tensor | None = None
    v: Tensor | None = None


@dataclass
class LayerCache:
    """Everything one block remembers between decoding steps."""

    self_kv: KVCache = field(default_factory=KVCache)
    cross_kv: StaticKV = field(default_factory=StaticKV)


class DecoderCache:
    """Per-layer caches of a backbone stack, passed to ``forward(..., cache=...)`` step after step."""

    def __init__(self, num_layers: int, capacity: int = 64, static: bool = False, device: torch.device | None = None
                 ) -> None:
        """Args:
            num_layers: blocks of the stack.
            capacity: positions preallocated (static: the most that can be decoded).
            static: fixed-shape steps (see :class:`KVCache`): one position per step, then :meth:`advance`.
            device: where the static position counter lives (the model's device).
        """
        self.position = torch.zeros((), dtype=torch.long, device=device) if static else None
        self.layers = [LayerCache(KVCache(capacity, self.position)) for _ in range(num_layers)]
        if static:
            self._set_window()

    @property
    def static(self) -> bool:
        return self.position is not None

    @property
    def offset(self) -> int | Tensor:
        """Position of the next token: an int, or (static) the 0-d position tensor, read without a sync."""
        return self.position if self.position is not None else self.length

    def advance(self) -> None:
        """Static caches: moves every layer one position on after a step (in place, so a compiled
        step keeps reading the same counter tensor). Dynamic caches advance inside ``append``."""
        if self.position is None:
            return
        self.position.add_(1)
        for layer in self.layers:
            layer.self_kv.length += 1
        self._set_window()

    def _set_window(self) -> None:
        """The next step writes slot ``length``, so its attention reads ``attention_window(length + 1)`` slots."""
        kv = self.layers[0].self_kv if self.layers else None
        if kv is not None:
            w = attention_window(kv.length + 1, kv.capacity)
            for layer in self.layers:
                layer.self_kv.window = w

    def tensors(self) -> list[Tensor]:
        """Every tensor a decoding step reads or writes in place: the position counter, each layer's self- and
        cross-attention K/V (for ``torch._dynamo.mark_static_address``: CUDA graphs
        then use them where they are instead of copying them in at every replay)."""
        out = [] if self.position is None else [self.position]
        for layer in self.layers:
            out += [t for t in (layer.self_kv._k, layer.self_kv._v, layer.self_kv._mask, layer.cross_kv.k,
                                layer.cross_kv.v) if t is not None]
        return out

    @property
    def length(self) -> int:
        """Number of positions already decoded (the position offset of the next token)."""
        return self.layers[0].self_kv.length

    def copy_rows(self, src: Tensor, dst: Tensor) -> None:
        """Rows ``dst`` of every self-attention cache become copies of rows ``src`` (see :meth:`KVCache.copy_rows`).

        Cross-attention K/V are not touched: beams of one source share the same memory row (or rows expanded
        once), so they never need copying."""
        for layer in self.layers:
            layer.self_kv.copy_rows(src, dst)

"""One decoding step after another: :class:`Stepper` feeds each row's newest token and returns next-token
log-probs (scores), over the model's KV cache or without one.

What a step needs beyond ``model.decode`` is split into the pieces that own it:

- :class:`SlotMap`: beam search's reorder without gathering the cache (logical rows → physical cache rows);
- :class:`CompiledDecode`: ``torch.compile`` / CUDA graphs over a static cache (the first step eager);
- the CPU fast path: the stepper is a context manager and, for eager CPU steps, runs the model's linears on
  MKL-packed weights (:func:`~mmformer.decoding.packed.packed_linears`) for its length; models and heads
  know nothing of it.
"""

from __future__ import annotations

from contextlib import ExitStack
from typing import Any

import torch
from torch import Tensor

from mmformer.backbone import BackboneOutput
from mmformer.decoding.config import GenerationConfig
from mmformer.decoding.packed import packed_linears
from mmformer.layers.kv_cache import DecoderCache

# torch.compile's backend for GenerationConfig(compile=True) (tests swap in a counting backend).
COMPILE_BACKEND: Any = "inductor"


def compiled_decode(model: Any, mode: str | None = None) -> Any:
    """``torch.compile(model.decode, mode=mode)``, built once per model and mode.

    Shapes are static except the static cache's attention window (powers of two, see
    :func:`~mmformer.layers.kv_cache.attention_window`): dynamo's default (``dynamic=None``) compiles the first
    window's shapes, and when the window grows, one graph with that length symbolic, instead of a graph per
    window (which would run into dynamo's recompile limit when greedy and beam search share a model)."""
    if getattr(model, "_compiled_decode", None) is None:  # a plain attribute: not a submodule, not saved
        object.__setattr__(model, "_compiled_decode", {})
    by_mode = model._compiled_decode
    if mode not in by_mode:
        by_mode[mode] = torch.compile(model.decode, dynamic=None, backend=COMPILE_BACKEND, mode=mode)
    return by_mode[mode]


class CompiledDecode:
    """``model.decode`` for a static cache's steps: the first call eager (it allocates the cache's buffers and
    the memory's cross-attention K/V, so compiled steps, CUDA graphs too, only write into tensors that exist, at
    addresses that never move), the later ones compiled. Returns the last position's logits ``(R, V)`` fp32."""

    def __init__(self, model: Any, cuda_graphs: bool) -> None:
        self._fn = model.decode
        self._compiled = compiled_decode(model, "reduce-overhead" if cuda_graphs else None)
        self._graphs = cuda_graphs

    def __call__(self, ids: Tensor, memory: BackboneOutput, cache: DecoderCache) -> Tensor:
        # CUDA graphs: always a copy (a graph's output buffer is overwritten by its next replay)
        out = self._fn(ids, memory, cache, last_only=True)[0][:, -1].to(torch.float32, copy=self._graphs)
        if self._fn is not self._compiled:
            # Unguarded: a new call (new buffers) re-records its CUDA graphs without recompiling.
            for t in [*cache.tensors(), *(t for t in (memory.hidden, memory.mask) if t is not None)]:
                torch._dynamo.mark_static_address(t)
            self._fn = self._compiled
        return out


class SlotMap:
    """Where each *logical* row (the order search ranks them in) lives in the cache: physical row ``slots[r]``.

    Beam search's reorder then keeps a surviving beam where it is and copies only beams duplicated into dropped
    ones (:meth:`reassign`), instead of gathering every row of every layer's cache each step.
    """

    def __init__(self, rows: int, device: torch.device) -> None:
        self.slots: Tensor | None = None  # (R,) physical row of each logical row; None = the identity so far
        self._rows = torch.arange(rows, device=device)

    def to_physical(self, x: Tensor) -> Tensor:
        """``x (R, ...)`` in logical order → physical order (row ``slots[r]`` gets logical row r's)."""
        return x if self.slots is None else torch.empty_like(x).index_copy_(0, self.slots, x)

    def to_logical(self, x: Tensor) -> Tensor:
        """``x (R, ...)`` in physical order → logical order."""
        return x if self.slots is None else x.index_select(0, self.slots)

    def reassign(self, rows: Tensor, cache: DecoderCache) -> None:
        """New logical row r continues old logical row ``rows[r]``: it takes over that row's cache slot when it
        is the first to claim it; later claimants (duplicated beams) get the slots nobody claimed, filled by
        copying. Beams only move within their source's block of rows, and each block has as many unclaimed
        slots as extra claimants, so matching both in ascending order keeps every row in its block."""
        n = rows.shape[0]
        want = rows if self.slots is None else self.slots.index_select(0, rows)  # (R,) physical slot claimed
        owner = torch.full_like(want, n).scatter_reduce_(0, want, self._rows, "amin")  # first claimant per slot
        extra = (owner.index_select(0, want) != self._rows).nonzero()[:, 0]  # (n_dup,) ascending logical rows
        if extra.numel() == 0:
            self.slots = want
            return
        free = (owner == n).nonzero()[:, 0]  # (n_dup,) ascending physical slots nobody claimed
        cache.copy_rows(want.index_select(0, extra), free)
        self.slots = want.index_copy(0, extra, free)


class Stepper:
    """Feeds one new token per row and returns next-token logits ``(R, V)`` fp32, with or without the KV cache.

    A context manager: inside it, eager CPU steps run on MKL-packed weights (``cfg.packed_weights``).

    Args:
        model: a :class:`~mmformer.decoding.protocol.DecodingModel`.
        memory: what ``model.encode`` returned (repeated per hypothesis where the model needs it).
        rows: R, the rows decoded at once.
        steps: tokens each row may still take (the cache holds bos + start + steps).
        cfg: cache, compile and packing settings, special ids.
        device: where the ids live.
        start: ``(R, m)`` ids after bos that every row begins with (the common part of the prompts); the first
            cached step feeds them with bos at once (prefill), later steps one token each.
    """

    def __init__(self, model: Any, memory: BackboneOutput, rows: int, steps: int, cfg: GenerationConfig,
                 device: torch.device, start: Tensor | None = None) -> None:
        self.model, self.memory, self.static = model, memory, cfg.static_steps
        self.cache: DecoderCache | None = None
        if cfg.use_cache:
            self.cache = model.new_cache(steps + 1, static=True) if self.static else model.new_cache(steps + 1)
        self._compiled = CompiledDecode(model, cfg.cuda_graphs) if cfg.compiled_steps else None
        self._slots = SlotMap(rows, device) if self.cache is not None else None
        self._packed = cfg.packed_weights and cfg.use_cache and not cfg.compiled_steps
        self._exit = ExitStack()
        m = 0 if start is None else start.shape[1]
        # (R, steps + 1 + m) ids so far, written in place (no growing cat per step); ``prefix`` is the filled part.
        self._ids = torch.full((rows, steps + 1 + m), cfg.pad_id, dtype=torch.long, device=device)
        self._ids[:, 0] = cfg.bos_id
        if start is not None:
            self._ids[:, 1:1 + m] = start
        self.t = 1 + m
        self.fed = 0  # positions of ``prefix`` already in the cache

    def __enter__(self) -> "Stepper":
        self._exit.enter_context(packed_linears(self.model, self._packed))
        return self

    def __exit__(self, *exc: object) -> None:
        self._exit.close()

    @property
    def prefix(self) -> Tensor:
        """``(R, t)`` ids so far, bos first, in logical row order."""
        return self._ids[:, : self.t]

    def logits(self) -> Tensor:
        """The next token's logits ``(R, V)`` fp32 of every row, in logical order."""
        if self.cache is None:
            return self.model.decode(self.prefix, self.memory, None, last_only=True)[0][:, -1].float()
        new = self._ids[:, self.fed:self.t]  # (R, n) not in the cache yet: bos (+ a prompt's common part), then 1 id
        self.fed = self.t
        if self._slots is not None and self._slots.slots is not None:
            ids = self._slots.to_physical(new)
        else:  # a fresh contiguous tensor for a static cache: the same shape and strides every step (no recompiles)
            ids = new.clone() if self.static else new
        if self._compiled is not None:
            out = self._compiled(ids, self.memory, self.cache)
        else:
            out = self.model.decode(ids, self.memory, self.cache, last_only=True)[0][:, -1].float()
        if self.static:
            self.cache.advance()
        return out if self._slots is None else self._slots.to_logical(out)

    def push(self, token: Tensor, rows: Tensor | None = None) -> None:
        """Appends ``token (R,)``; ``rows (R,)`` first reorders the history (beam search)."""
        if rows is not None:
            self._ids[:, : self.t] = self._ids[:, : self.t].index_select(0, rows)
            if self._slots is not None:
                self._slots.reassign(rows, self.cache)  # type: ignore[arg-type]
        self._ids[:, self.t] = token
        self.t += 1


__all__ = ["COMPILE_BACKEND", "CompiledDecode", "SlotMap", "Stepper", "compiled_decode"]

"""CPU decoding's matmuls through MKL's packed GEMM: each ``nn.Linear`` packs its weight once per decoding loop.

A decoding step multiplies a few rows (the batch, or batch x beams) by every weight of the decoder, so on a
CPU it is bound by reading weights from memory, which MKL's ordinary GEMM does slowly when the rows are so
few. ``torch.ops.mkl._mkl_linear`` multiplies by a weight packed beforehand (``cblas_sgemm_pack``) for a fixed
row count, which streams it faster (bench/generation.py measures the gain). The same product up to float
rounding (summation order); it is what inductor's weight prepacking calls after freezing.

:func:`packed_linears` swaps this in for the ``nn.Linear`` modules of a model for the length of a ``with``
block (the decoding :class:`~mmformer.decoding.stepper.Stepper` owns one per call). A linear packs its weight
once ``PACK_AFTER`` calls in a row have had the same row count (a decoding loop's steps), so the encoder's
single pass, a prefill step and short decodes never pay for packing, and calls alternating between two row
counts do not repack. Anything else (a GPU, another dtype, autograd, autocast, torch.compile tracing, a torch
built without MKL) runs ``F.linear`` as before.
"""

from __future__ import annotations

import threading
from contextlib import contextmanager
from typing import Iterator

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def mkl_packing_available() -> bool:
    """True where torch was built with MKL and registers its packed linear (x86 PyPI wheels do)."""
    if not torch.backends.mkl.is_available():
        return False
    try:
        torch.ops.mkl._mkl_linear, torch.ops.mkl._mkl_reorder_linear_weight  # noqa: B018 (resolves the ops)
    except (AttributeError, RuntimeError):
        return False
    return True


# Consecutive calls with one row count after which a linear packs its weight: packing costs a pass over the weight,
# so a loop must run a while before it pays (bench/generation.py); a long decode gives up only these first steps' gain.
PACK_AFTER = 8


class PackedForward:
    """Replaces one ``nn.Linear``'s forward while decoding: ``x (..., in) -> (..., out)``, the same function.

    Safe when several threads decode through one model: each thread counts its own consecutive row counts
    (its own decoding loop), and the packings are shared, one per row count, under a lock. A packing is
    remade when the weight changed since (its version counter or storage), so it never serves stale weights.
    """

    # Row counts whose packing is kept at once: a few concurrent decodes (greedy B rows, beam B*K rows).
    MAX_PACKINGS = 4

    def __init__(self, linear: nn.Linear) -> None:
        self.linear = linear
        self._local = threading.local()  # seen: the previous call's row count; streak; rows: the packing in use
        self._lock = threading.Lock()
        # rows -> ((weight version, weight data_ptr), MKL's opaque weight packed for that row count)
        self._packings: dict[int, tuple[tuple[int, int], Tensor]] = {}

    def _state(self) -> threading.local:
        st = self._local
        if not hasattr(st, "streak"):
            st.seen, st.streak, st.rows = None, 0, None
        return st

    @property
    def rows(self) -> int | None:
        """The row count (all dims but the last, multiplied) this thread's calls run packed for; None until packed."""
        return self._state().rows

    def _eligible(self, x: Tensor) -> bool:
        """Checked at every call (a few us): the packed op has no autograd, autocast nor compiled form."""
        return (x.dtype == torch.float32 and x.device.type == "cpu" and not torch.is_grad_enabled()
                and not torch.is_autocast_enabled("cpu") and not torch.compiler.is_compiling())

    def _packing(self, rows: int, w: Tensor) -> Tensor:
        """The weight packed for ``rows``, remade when the weight changed in place (``_version``) or was replaced."""
        key = (w._version, w.data_ptr())
        with self._lock:
            hit = self._packings.get(rows)
            if hit is not None and hit[0] == key:
                return hit[1]
            packed = torch.ops.mkl._mkl_reorder_linear_weight(w.detach(), rows)
            self._packings.pop(rows, None)
            self._packings[rows] = (key, packed)
            while len(self._packings) > self.MAX_PACKINGS:  # the oldest row count goes first
                self._packings.pop(next(iter(self._packings)))
            return packed

    def __call__(self, x: Tensor) -> Tensor:
        w, b = self.linear.weight, self.linear.bias
        if x.shape[-1] != w.shape[-1] or x.shape[-1] == 0:
            return F.linear(x, w, b)  # raises F.linear's own shape error (MKL's op would read past the input)
        rows = x.numel() // x.shape[-1]
        if rows and w.dtype == torch.float32 and self._eligible(x):
            st = self._state()
            st.streak = st.streak + 1 if rows == st.seen else 1
            st.seen = rows
            if st.rows != rows:
                if st.streak < PACK_AFTER:
                    return F.linear(x, w, b)
                st.rows = rows  # PACK_AFTER calls in a row with these rows: a decoding loop, worth packing for
            return torch.ops.mkl._mkl_linear(x, self._packing(rows, w), w, b, rows)
        return F.linear(x, w, b)


def is_packed(linear: nn.Module) -> bool:
    """Whether ``linear`` currently runs through :class:`PackedForward` (inside :func:`packed_linears`)."""
    return isinstance(linear.__dict__.get("forward"), PackedForward)


# Swaps are reference-counted under one lock, so blocks of several threads over one model can enter and leave
# in any order: the first entrant swaps a linear's forward in, the last leaver restores the module's own.
_SWAP_LOCK = threading.Lock()
_HOLDERS: dict[nn.Linear, int] = {}  # swapped module -> blocks (all threads) currently inside


def _swappable(m: nn.Module) -> bool:
    return isinstance(m, nn.Linear) and type(m).forward is nn.Linear.forward


@contextmanager
def packed_linears(model: object, enabled: bool = True) -> Iterator[list[PackedForward]]:
    """Within the block, every plain ``nn.Linear`` of ``model`` (its class's forward not overridden, LMHead
    included) runs through a :class:`PackedForward`; yields them. The modules' own forwards come back when the
    last block holding them exits (nested blocks and blocks of other threads share the swap), exceptions
    included, and the packed weights are freed.

    ``enabled=False``, no MKL, no parameter on the CPU, or ``model`` not an ``nn.Module`` (decoding takes any
    object with the model's methods): nothing is swapped."""
    held: list[nn.Linear] = []
    if (enabled and isinstance(model, nn.Module) and mkl_packing_available()
            and any(p.device.type == "cpu" for p in model.parameters())):
        with _SWAP_LOCK:
            for m in model.modules():
                if not _swappable(m):
                    continue
                if m in _HOLDERS:
                    _HOLDERS[m] += 1
                elif "forward" not in m.__dict__:  # an instance forward of someone else's is left alone
                    m.forward = PackedForward(m)  # an instance attribute: nn.Module.__call__ finds it first
                    _HOLDERS[m] = 1
                else:
                    continue
                held.append(m)
    try:
        yield [m.__dict__["forward"] for m in held]
    finally:
        with _SWAP_LOCK:
            for m in held:
                _HOLDERS[m] -= 1
                if _HOLDERS[m] == 0:
                    del _HOLDERS[m]
                    if is_packed(m):
                        del m.forward


__all__ = ["PACK_AFTER", "PackedForward", "is_packed", "mkl_packing_available", "packed_linears"]

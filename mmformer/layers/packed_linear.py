"""CPU decoding's matmuls through MKL's packed GEMM: each ``nn.Linear`` packs its weight once per decoding run.

A decoding step multiplies a few rows (the batch, or batch x beams) by every weight of the decoder, so on a
CPU it is bound by reading weights from memory, which MKL's ordinary GEMM does at half the speed of a plain
pass over them when the rows are so few. ``torch.ops.mkl._mkl_linear`` multiplies by a weight packed
beforehand (``cblas_sgemm_pack``) for a fixed row count: on one core, 8 rows x (256 -> 8000) take 0.84 ms
instead of 1.45 ms (the weight streams at ~10 GB/s, as a plain sum over it does, instead of ~5.5), and the
layers' 256/1024-wide matmuls gain 1.1-1.3x. The same product up to float rounding (summation order); it is
what inductor's weight prepacking calls after freezing.

:func:`packed_linears` swaps this in for the ``nn.Linear`` modules of a model for the length of a ``with``
block. A linear packs its weight once ``PACK_AFTER`` calls in a row have had the same row count (a decoding
loop's steps), so the encoder's single pass, a prefill step and short decodes never pay for packing, and calls
alternating between two row counts do not repack. Anything else (a GPU, another dtype, autograd, autocast, torch.compile
tracing, a torch built without MKL) runs ``F.linear`` as before.
"""

from __future__ import annotations

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


# Consecutive calls with one row count after which a linear packs its weight. Packing at the second call made
# short decodes of bench/generation.py's model slower (4 tokens: 1.12-1.19x as long; 16 greedy tokens: 1.03-1.09x),
# so a loop must run a while before it pays; a long decode gives up only these first steps' gain.
PACK_AFTER = 8


class PackedForward:
    """Replaces one ``nn.Linear``'s forward while decoding: ``x (..., in) -> (..., out)``, the same function."""

    def __init__(self, linear: nn.Linear) -> None:
        self.linear = linear
        self._seen: int | None = None  # the previous call's row count
        self._streak = 0  # consecutive calls with that row count
        # (rows, MKL's opaque weight packed for them): one attribute, read once per call, so a thread that
        # repacks for other rows can never pair a packing with the wrong row count
        self._packed: tuple[int, Tensor] | None = None

    @property
    def rows(self) -> int | None:
        """The row count (all dims but the last, multiplied) the weight is packed for; None until packed."""
        return None if self._packed is None else self._packed[0]

    def _eligible(self, x: Tensor) -> bool:
        """Checked at every call (a few us): the packed op has no autograd, autocast nor compiled form."""
        return (x.dtype == torch.float32 and x.device.type == "cpu" and not torch.is_grad_enabled()
                and not torch.is_autocast_enabled("cpu") and not torch.compiler.is_compiling())

    def __call__(self, x: Tensor) -> Tensor:
        w, b = self.linear.weight, self.linear.bias
        rows = x.numel() // x.shape[-1] if x.shape[-1] else 0
        if rows and self._eligible(x):
            self._streak = self._streak + 1 if rows == self._seen else 1
            self._seen, packed = rows, self._packed
            if packed is None or packed[0] != rows:
                if self._streak < PACK_AFTER or w.dtype != torch.float32:
                    return F.linear(x, w, b)
                # PACK_AFTER calls in a row with these rows: a decoding loop, worth packing for
                packed = self._packed = (rows, torch.ops.mkl._mkl_reorder_linear_weight(w.detach(), rows))
            return torch.ops.mkl._mkl_linear(x, packed[1], w, b, rows)
        return F.linear(x, w, b)


def is_packed(linear: nn.Module) -> bool:
    """Whether ``linear`` currently runs through :class:`PackedForward` (inside :func:`packed_linears`)."""
    return isinstance(linear.__dict__.get("forward"), PackedForward)


@contextmanager
def packed_linears(model: object, enabled: bool = True) -> Iterator[list[PackedForward]]:
    """Within the block, every plain ``nn.Linear`` of ``model`` (its class's forward not overridden, LMHead
    included) runs through a :class:`PackedForward`; yields them. The modules' own forwards come back on exit,
    exceptions included, and the packed weights are freed. Nested blocks leave the outer one's in place. A
    packing is a copy: the weights must not change inside the block (decoding never changes them).

    ``enabled=False``, no MKL, no parameter on the CPU, or ``model`` not an ``nn.Module`` (decoding takes any
    object with the model's methods): nothing is swapped."""
    swapped: list[nn.Linear] = []
    if (enabled and isinstance(model, nn.Module) and mkl_packing_available()
            and any(p.device.type == "cpu" for p in model.parameters())):
        for m in model.modules():
            if isinstance(m, nn.Linear) and type(m).forward is nn.Linear.forward and "forward" not in m.__dict__:
                m.forward = PackedForward(m)  # an instance attribute: nn.Module.__call__ finds it first
                swapped.append(m)
    try:
        yield [m.forward for m in swapped]  # type: ignore[misc]
    finally:
        for m in swapped:
            del m.forward


__all__ = ["PACK_AFTER", "PackedForward", "is_packed", "mkl_packing_available", "packed_linears"]

"""What decoding asks of a model: :class:`DecodingModel` (and :class:`CTCDecodingModel` for hybrid CTC/attention
search), as ``typing.Protocol``s. Models never import decoding; they satisfy these structurally
(:class:`~mmformer.models.seq2seq.Seq2Seq`, :class:`~mmformer.models.causal_lm.CausalLM`,
:class:`~mmformer.models.prefix_lm.PrefixLM`, converted peer checkpoints, a test's fake)."""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

from torch import Tensor

from mmformer.backbone import BackboneOutput
from mmformer.layers.kv_cache import DecoderCache


@runtime_checkable
class DecodingModel(Protocol):
    """An autoregressive decoder over a memory.

    ``max_target_len``: positions the decoder takes, bos included. Optional attribute ``grouped_memory: bool``:
    ``decode`` lets ``g`` consecutive rows share one memory row (beam search then passes the memory once per
    source instead of once per hypothesis).
    """

    @property
    def max_target_len(self) -> int: ...

    def encode(self, source: Any) -> BackboneOutput:
        """``source`` (a batch of B inputs) → the memory ``hidden (B, S, D)``, ``mask (B, S)``."""
        ...

    def decode(self, ids: Tensor, memory: BackboneOutput, cache: DecoderCache | None = None,
               need_weights: bool = False, last_only: bool = False) -> tuple[Tensor, Any]:
        """``ids (R, T)`` (with a cache: only the positions it does not hold) → ``(logits (R, T, V), anything)``;
        ``last_only``: logits of the last position only, ``(R, 1, V)``."""
        ...

    def new_cache(self, capacity: int = 64, static: bool = False) -> DecoderCache:
        """An empty KV cache for ``capacity`` positions; ``static``: fixed-shape steps (for torch.compile), or a
        ``ValueError`` naming the setting to turn off where the model cannot."""
        ...


@runtime_checkable
class CTCDecodingModel(DecodingModel, Protocol):
    """A :class:`DecodingModel` with a CTC head over its memory (``ctc_head`` None = none trained)."""

    ctc_head: Any

    def ctc_logits(self, memory: BackboneOutput) -> Tensor:
        """The memory → frame-wise label scores ``(B, S, V)`` (blank = the pad id)."""
        ...


__all__ = ["CTCDecodingModel", "DecodingModel"]

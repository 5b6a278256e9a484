"""A decoder-only causal language model (GPT-2 style): text tokenizer → causal encoder → tied LM head.

It also speaks :mod:`mmformer.decoding`'s model interface (``encode`` / ``decode`` / ``new_cache`` /
``max_target_len``), with an empty memory, so greedy, sampled and beam decoding run on it unchanged:
every row starts from the bos id.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from torch import Tensor, nn

from mmformer.backbone import BackboneOutput, Encoder
from mmformer.heads import LMHead
from mmformer.layers.kv_cache import DecoderCache
from mmformer.models.seq2seq import DecoderOutput
from mmformer.tokenizers.text import TextTokenizer


class CausalLM(nn.Module):
    """``ids (B, T)`` → next-token logits ``(B, T, V)``.

    Args:
        tokenizer: embeds ids (its table is the output projection when tied).
        backbone: an :class:`Encoder` with ``causal: true``.
        tie_embeddings: share the embedding with the output projection (GPT-2).
        logits_bias: a learned per-token bias on the logits.
    """

    def __init__(self, tokenizer: TextTokenizer, backbone: Encoder, tie_embeddings: bool = True,
                 logits_bias: bool = False) -> None:
        super().__init__()
        if not backbone.causal:
            raise ValueError("a causal LM needs a causal backbone: set backbone config causal=True")
        if tokenizer.dim != backbone.config.dim:
            raise ValueError(f"the tokenizer has width {tokenizer.dim} but the backbone's dim is {backbone.config.dim}")
        self.tokenizer, self.backbone = tokenizer, backbone
        self.lm_head = LMHead(backbone.config.dim, tokenizer.vocab_size,
                              tokenizer.embed if tie_embeddings else None, bias=logits_bias)

    @property
    def max_target_len(self) -> int:
        """Longest sequence the position table takes."""
        return self.tokenizer.max_len if self.tokenizer.pos is not None else 1 << 30

    def new_cache(self, capacity: int = 64, static: bool = False) -> DecoderCache:
        """The stack's KV cache (``static``: fixed-shape steps for torch.compile, see :class:`DecoderCache`)."""
        return self.backbone.new_cache(capacity, static)

    def hidden_states(self, ids: Tensor, mask: Tensor | None = None, cache: DecoderCache | None = None) -> Tensor:
        """``ids (B, T)`` (the new positions when a cache holds earlier ones) → hidden ``(B, T, D)``.

        ``mask (B, T)``: key-padding mask, True = real; None = every token real (right padding needs
        none under causal attention: no real token sees a later pad).
        """
        batch = self.tokenizer(ids, offset=cache.length if cache is not None else 0, mask=False)
        if mask is not None:
            batch = dataclasses.replace(batch, mask=mask)
        return self.backbone(batch, cache=cache).hidden

    def forward(self, ids: Tensor, mask: Tensor | None = None, cache: DecoderCache | None = None) -> Tensor:
        """``ids (B, T)`` → logits ``(B, T, V)``; see :meth:`hidden_states` for ``mask`` and ``cache``."""
        return self.lm_head(self.hidden_states(ids, mask, cache))

    # -- mmformer.decoding's interface: no source, an empty memory ------------------------------
    def encode(self, source: Any) -> BackboneOutput:
        """An empty memory ``(B, 0, D)``; ``source`` only gives the batch size (an int or a ``(B, ...)`` tensor)."""
        b = source if isinstance(source, int) else len(source)
        w = self.lm_head.weight
        return BackboneOutput(w.new_zeros(b, 0, self.backbone.config.dim), None)

    def decode(self, ids: Tensor, memory: BackboneOutput, cache: DecoderCache | None = None,
               need_weights: bool = False, last_only: bool = False) -> DecoderOutput:
        """As :meth:`mmformer.models.Seq2Seq.decode`; the memory is unused."""
        batch = self.tokenizer(ids, offset=cache.offset if cache is not None else 0, mask=False)  # static: a tensor
        out = self.backbone(batch, cache=cache, need_weights=need_weights)
        hidden = out.hidden[:, -1:] if last_only else out.hidden
        return DecoderOutput(self.lm_head(hidden), out)


__all__ = ["CausalLM"]

"""A decoder-only prefix LM: tokens of any modality (the prefix) ahead of text, one causal backbone.

One token sequence ``[prefix (B, P, D) | text (B, T, D)]`` runs through one :class:`~mmformer.backbone.Encoder`
with the prefix-LM mask (Raffel et al. 2020, T5's prefix LM; LLaVA's image tokens ahead of text; GATO):
prefix tokens attend to every real prefix token (bidirectionally), text tokens attend to the whole
prefix and causally to text. Only text positions are projected to the vocabulary, so the loss is on
text alone. With no prefix (no prefix tokenizer, or ``P = 0``) it *is* :class:`CausalLM`: a GPT-style
language model.

Generation goes through :mod:`mmformer.decoding` unchanged: :meth:`PrefixLM.encode` tokenizes the
prefix into the "memory" (not contextualized yet), and the first :meth:`PrefixLM.decode` call with an
empty KV cache prefills prefix and bos at once; later steps feed only new text tokens, which see the
cached prefix.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from mmformer.backbone import BackboneOutput, Encoder
from mmformer.heads import CTCHead
from mmformer.layers.kv_cache import DecoderCache
from mmformer.models.causal_lm import CausalLM
from mmformer.models.seq2seq import DecoderOutput
from mmformer.tokenizers.base import ModalityTokenizer, TokenBatch
from mmformer.tokenizers.text import TextTokenizer


class PrefixLM(CausalLM):
    """``prefix`` (any modality, or none) + ``ids (B, T)`` → next-token logits ``(B, T, V)`` of the text.

    Args:
        tokenizer: embeds text ids (its table is the output projection when tied).
        backbone: an :class:`Encoder` with ``causal: true``.
        prefix_tokenizer: turns a raw ``source`` batch into the prefix tokens (images → patches,
            audio → frames, ...); None = a plain causal LM.
        tie_embeddings, logits_bias: as :class:`CausalLM`.
        ctc_vocab_size: > 0 adds a :class:`~mmformer.heads.CTCHead` of that many labels on the prefix's
            backbone states (speech: CTC/attention training and hybrid decoding, Watanabe et al. 2017).
    """

    def __init__(self, tokenizer: TextTokenizer, backbone: Encoder, prefix_tokenizer: ModalityTokenizer | None = None,
                 tie_embeddings: bool = True, logits_bias: bool = False, ctc_vocab_size: int = 0) -> None:
        super().__init__(tokenizer, backbone, tie_embeddings, logits_bias)
        if prefix_tokenizer is not None and prefix_tokenizer.dim != backbone.config.dim:
            raise ValueError(f"the prefix tokenizer has width {prefix_tokenizer.dim} but the backbone's dim is "
                             f"{backbone.config.dim}")
        if ctc_vocab_size > 0 and prefix_tokenizer is None:
            raise ValueError("a CTC head reads the prefix's states: it needs a prefix tokenizer")
        self.prefix_tokenizer = prefix_tokenizer
        # Registered only when asked, so models without one keep their state_dict keys.
        self.ctc_head = CTCHead(backbone.config.dim, ctc_vocab_size) if ctc_vocab_size > 0 else None

    def encode(self, source: Any) -> BackboneOutput:
        """Raw ``source`` → the prefix: its tokens ``(B, P, D)`` (embedded, not yet through the backbone) and
        their right-padded mask ``(B, P)`` (None = all real). Without a prefix tokenizer ``source`` only
        gives the batch size (an int or a ``(B, ...)`` tensor) and the prefix is empty, ``(B, 0, D)``."""
        if self.prefix_tokenizer is None:
            return super().encode(source)
        if source is None or isinstance(source, int):
            raise ValueError("this model reads a prefix: pass the source batch its prefix tokenizer takes")
        batch = self.prefix_tokenizer(source)
        if batch.documents is not None:
            raise ValueError("the prefix tokenizer returned packed rows; a prefix LM takes padded rows")
        return BackboneOutput(batch.tokens, batch.mask, num_prefix_tokens=batch.num_prefix_tokens, grid=batch.grid)

    def ctc_logits(self, memory: BackboneOutput, hidden: Tensor | None = None) -> Tensor:
        """CTC scores ``(B, P, V)`` per prefix token (frames marked by ``memory.mask``).

        ``hidden`` ``(B, P, D)``: the prefix's backbone states from a full ``[prefix | text]`` pass (training);
        None runs the prefix alone through the backbone (decoding). The two are equal, because under the
        prefix-LM mask no prefix token attends to text.
        """
        if self.ctc_head is None:
            raise ValueError("this model has no CTC head (build it with ctc_vocab_size > 0, e.g. ctc_weight > 0)")
        if hidden is None:
            p = memory.hidden.shape[1]
            batch = TokenBatch(memory.hidden, memory.mask, self._positions(memory, 0, 0, True),
                               needs_rope=self.backbone.config.rope)
            hidden = self.backbone(batch, prefix_len=p).hidden
        return self.ctc_head(hidden)

    def new_cache(self, capacity: int = 64, static: bool = False) -> DecoderCache:
        """A dynamic KV cache (its first step prefills ``[prefix | bos]`` at once, which a static one cannot)."""
        if static:
            raise ValueError("a prefix LM decodes with a dynamic KV cache (the first step prefills the prefix); "
                             "set generation.static_cache and generation.compile to false")
        return super().new_cache(capacity)

    def _positions(self, prefix: BackboneOutput, text_offset: int, t: int, with_prefix: bool) -> Tensor | None:
        """RoPE positions ``(B, [P +] t)``: the prefix counts 0 .. P-1, text continues after each row's *real*
        prefix tokens, so a row's text positions do not depend on how much padding its prefix has."""
        if not self.backbone.config.rope:
            return None
        hidden = prefix.hidden
        b, p = hidden.shape[:2]
        real = prefix.mask.sum(1) if prefix.mask is not None else torch.full((b,), p, device=hidden.device)
        text = real[:, None] + text_offset + torch.arange(t, device=hidden.device)  # (B, t)
        if not with_prefix:
            return text
        return torch.cat([torch.arange(p, device=hidden.device).expand(b, -1), text], 1)

    def decode(self, ids: Tensor, memory: BackboneOutput, cache: DecoderCache | None = None,
               need_weights: bool = False, last_only: bool = False) -> DecoderOutput:
        """Text ``ids (B, T)`` after the prefix ``memory`` (from :meth:`encode`) → text logits ``(B, T, V)``.

        Without a cache, or with an empty one (the first decoding step), the prefix runs with the text
        (``[prefix | text]`` under the prefix-LM mask) and the cache, if any, keeps its keys and values;
        with a cache that holds them, ``ids`` are the new text positions only. Text rows are right-padded,
        so no real token sees a later pad and the text needs no padding mask. ``last_only`` projects only
        the last position: ``(B, 1, V)``. ``output`` is the backbone's, over ``[prefix | text]`` on a full pass.
        """
        p = memory.hidden.shape[1]
        first = cache is None or cache.length == 0
        offset = 0 if first else cache.length - p  # type: ignore[union-attr]
        batch = self.tokenizer(ids, offset=offset, mask=False)
        if first and p:
            tokens = torch.cat([memory.hidden.to(batch.tokens.dtype), batch.tokens], 1)  # (B, P + T, D)
            mask = None if memory.mask is None else torch.cat([memory.mask, memory.mask.new_ones(ids.shape)], 1)
            batch = TokenBatch(tokens, mask, self._positions(memory, 0, ids.shape[1], True),
                               needs_rope=batch.needs_rope)
        elif p:
            batch = TokenBatch(batch.tokens, None, self._positions(memory, offset, ids.shape[1], False),
                               needs_rope=batch.needs_rope)
        out = self.backbone(batch, cache=cache, need_weights=need_weights, prefix_len=p if first else 0)
        hidden = out.hidden[:, p:] if first else out.hidden  # text positions only: the loss is on text
        hidden = hidden[:, -1:] if last_only else hidden
        return DecoderOutput(self.lm_head(hidden), out)

    def forward(self, ids: Tensor, mask: Tensor | None = None, cache: DecoderCache | None = None, *,
                prefix: BackboneOutput | None = None) -> Tensor:
        """``ids (B, T)`` → logits ``(B, T, V)``; ``prefix`` (from :meth:`encode`) ahead of them, or none.

        Without a prefix this is :meth:`CausalLM.forward` (``mask``, ``cache`` as there).
        """
        if prefix is None or prefix.hidden.shape[1] == 0:
            return super().forward(ids, mask, cache)
        if mask is not None:
            raise ValueError("with a prefix, text rows are right-padded and take no mask (the prefix has its own)")
        return self.decode(ids, prefix, cache).logits


__all__ = ["PrefixLM"]

"""The plain encoder–decoder model (no Lightning): any source tokenizer → encoder → memory →
causal text decoder with cross-attention → tied output projection; optionally a CTC head on the
encoder, so an exported speech model keeps it."""

from __future__ import annotations

from typing import Any, NamedTuple

from torch import Tensor, nn

from mmformer.backbone import BackboneOutput, Decoder, Encoder
from mmformer.heads import CTCHead, LMHead
from mmformer.layers.kv_cache import DecoderCache
from mmformer.layers.packing import Packing
from mmformer.tokenizers.base import ModalityTokenizer
from mmformer.tokenizers.text import TextTokenizer


class DecoderOutput(NamedTuple):
    logits: Tensor  # (B, T, V) next-token scores, or (B, 1, V) with last_only
    output: BackboneOutput  # the decoder's hidden states (and cross-attention weights when asked)


class Seq2Seq(nn.Module):
    """``source → memory`` with the encoder, ``(target ids, memory) → next-token logits`` with the decoder.

    The memory is the encoder's :class:`~mmformer.backbone.BackboneOutput` (hidden ``(B, S, D)`` and
    mask ``(B, S)``). Beam search passes it unexpanded (``grouped_memory``): the decoder's cross-attention lets
    the K hypotheses of a source share its memory row.

    Args:
        source_tokenizer: any modality tokenizer of width D (text, audio, image patches...).
        encoder: the source backbone.
        target_tokenizer: embeds target ids (its table is the output projection when tied).
        decoder: causal self-attention + cross-attention stack.
        tie_embeddings: share the target embedding with the output projection (Press & Wolf 2017).
        ctc_vocab_size: > 0 adds a :class:`~mmformer.heads.CTCHead` of that many labels on the
            encoder (hybrid CTC/attention training, CTC decoding); 0 = none.
        logits_bias: a learned per-token bias on the output logits (Marian's ``final_logits_bias``).
        bidirectional: read the source bidirectionally even through a causal encoder (``prefix_len`` = every
            source token). A multi-task model sets it when its shared causal backbone is this model's encoder.
    """

    grouped_memory = True  # decode takes a memory of B/g rows for B target rows (g hypotheses per source)
    shared_backbone = "encoder"  # the submodule a multi-task model replaces with its shared backbone

    def __init__(
        self,
        source_tokenizer: ModalityTokenizer,
        encoder: Encoder,
        target_tokenizer: TextTokenizer,
        decoder: Decoder,
        tie_embeddings: bool = True,
        ctc_vocab_size: int = 0,
        logits_bias: bool = False,
        bidirectional: bool = False,
    ) -> None:
        super().__init__()
        self.bidirectional = bidirectional
        self.source_tokenizer, self.encoder = source_tokenizer, encoder
        self.target_tokenizer, self.decoder = target_tokenizer, decoder
        self.lm_head = LMHead(decoder.config.dim, target_tokenizer.vocab_size,
                              target_tokenizer.embed if tie_embeddings else None, bias=logits_bias)
        self.ctc_head = CTCHead(encoder.config.dim, ctc_vocab_size) if ctc_vocab_size > 0 else None

    @property
    def max_target_len(self) -> int:
        """Longest target (bos included) the decoder's position table takes."""
        return self.target_tokenizer.max_len if self.target_tokenizer.pos is not None else 1 << 30

    def encode(self, source: Any, need_weights: bool = False, packing: Packing | None = None) -> BackboneOutput:
        """Raw source batch → memory: the encoder output, hidden ``(B, S, D)`` with mask ``(B, S)``.

        With ``packing`` (the source side's), the tokens are packed after the tokenizer and the memory
        is packed rows ``(R, S_packed, D)`` carrying ``documents`` (see :mod:`mmformer.layers.packing`).
        """
        batch = self.source_tokenizer(source)
        if self.bidirectional and self.encoder.causal:  # (B, S) tokens all in the prefix: full attention
            if packing is not None:
                raise ValueError("a causal encoder read bidirectionally (a multi-task model's shared backbone) takes "
                                 "padded sources; turn packing off for this task")
            return self.encoder(batch, need_weights=need_weights, prefix_len=batch.seq_len)
        return self.encoder(batch if packing is None else batch.packed(packing), need_weights=need_weights)

    def ctc_logits(self, memory: BackboneOutput) -> Tensor:
        """The CTC head's frame-wise scores ``(B, S, V)`` over the memory."""
        if self.ctc_head is None:
            raise ValueError("this model has no CTC head (build it with ctc_vocab_size > 0, e.g. ctc_weight > 0)")
        return self.ctc_head(memory.hidden)

    def new_cache(self, capacity: int = 64, static: bool = False) -> DecoderCache:
        """The decoder's KV cache (``static``: fixed-shape steps for torch.compile, see :class:`DecoderCache`)."""
        return self.decoder.new_cache(capacity, static)

    def decode(
        self, ids: Tensor, memory: BackboneOutput, cache: DecoderCache | None = None, need_weights: bool = False,
        last_only: bool = False, packing: Packing | None = None,
    ) -> DecoderOutput:
        """Target ids ``(B, T)`` → logits ``(B, T, V)`` (and the decoder output).

        With a cache, ``ids`` are only the new positions and the cache holds the earlier ones.
        ``last_only`` projects only the last position to the vocabulary: ``(B, 1, V)`` (decoding).
        Rows are right-padded, so under causal attention no real token ever sees a pad: the
        decoder runs without a padding mask and keeps SDPA's ``is_causal`` kernel.
        ``packing`` (the target side's, with a memory from ``encode(..., packing=...)``) packs the
        target rows too: logits come out packed, ``(R, T_packed, V)`` (pack the labels alike).
        """
        offset = cache.offset if cache is not None else 0  # a static cache's is a tensor: no recompiles
        batch = self.target_tokenizer(ids, offset=offset, mask=False)
        if packing is not None:
            batch = batch.packed(packing)
        out = self.decoder(batch, memory.hidden, memory.mask, cache=cache, need_weights=need_weights,
                           memory_documents=memory.documents)
        hidden = out.hidden[:, -1:] if last_only else out.hidden
        return DecoderOutput(self.lm_head(hidden), out)

    def forward(self, source: Any, target_in: Tensor) -> Tensor:
        """Teacher forcing: ``target_in (B, T)`` = [bos] + target[:-1] → logits ``(B, T, V)``."""
        return self.decode(target_in, self.encode(source)).logits

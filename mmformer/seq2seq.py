"""The plain encoder–decoder model (no Lightning): any source tokenizer → encoder → memory →
causal text decoder with cross-attention → tied output projection."""

from __future__ import annotations

from typing import Any, NamedTuple

from torch import Tensor, nn

from mmformer.backbone import BackboneOutput, Decoder, Encoder
from mmformer.layers.kv_cache import DecoderCache
from mmformer.tokenizers.base import ModalityTokenizer
from mmformer.tokenizers.text import TextTokenizer


class Memory(NamedTuple):
    """What the decoder cross-attends to."""

    hidden: Tensor  # (B, S, D) encoder output
    mask: Tensor | None  # (B, S) True = real source token; None = all real

    def repeat(self, n: int) -> Memory:
        """Each row ``n`` times in a row (``(B*n, S, D)``): beam search's view of the memory."""
        mask = None if self.mask is None else self.mask.repeat_interleave(n, 0)
        return Memory(self.hidden.repeat_interleave(n, 0), mask)


class Seq2Seq(nn.Module):
    """``source → memory`` with the encoder, ``(target ids, memory) → next-token logits`` with the decoder.

    Args:
        source_tokenizer: any modality tokenizer of width D (text, audio, image patches...).
        encoder: the source backbone.
        target_tokenizer: embeds target ids (its table is the output projection when tied).
        decoder: causal self-attention + cross-attention stack.
        tie_embeddings: share the target embedding with the output projection (Press & Wolf 2017).
    """

    def __init__(
        self,
        source_tokenizer: ModalityTokenizer,
        encoder: Encoder,
        target_tokenizer: TextTokenizer,
        decoder: Decoder,
        tie_embeddings: bool = True,
    ) -> None:
        super().__init__()
        self.source_tokenizer, self.encoder = source_tokenizer, encoder
        self.target_tokenizer, self.decoder = target_tokenizer, decoder
        self.lm_head = nn.Linear(decoder.config.dim, target_tokenizer.vocab_size, bias=False)
        if tie_embeddings:
            self.lm_head.weight = target_tokenizer.embed.weight
        else:
            nn.init.trunc_normal_(self.lm_head.weight, std=0.02)

    @property
    def max_target_len(self) -> int:
        """Longest target (bos included) the decoder's position table takes."""
        return self.target_tokenizer.max_len if self.target_tokenizer.pos is not None else 1 << 30

    def encode_source(self, source: Any) -> tuple[Memory, BackboneOutput]:
        """Raw source batch → memory; also the encoder output (for CTC heads and attention maps)."""
        out = self.encoder(self.source_tokenizer(source))
        return Memory(out.hidden, out.mask), out

    def encode(self, source: Any) -> Memory:
        return self.encode_source(source)[0]

    def new_cache(self, capacity: int = 64) -> DecoderCache:
        return self.decoder.new_cache(capacity)

    def decode(
        self, ids: Tensor, memory: Memory, cache: DecoderCache | None = None, need_weights: bool = False,
        last_only: bool = False,
    ) -> tuple[Tensor, BackboneOutput]:
        """Target ids ``(B, T)`` → logits ``(B, T, V)`` (and the decoder output).

        With a cache, ``ids`` are only the new positions and the cache holds the earlier ones.
        ``last_only`` projects only the last position to the vocabulary: ``(B, 1, V)`` (decoding).
        Rows are right-padded, so under causal attention no real token ever sees a pad: the
        decoder runs without a padding mask and keeps SDPA's ``is_causal`` kernel.
        """
        offset = cache.length if cache is not None else 0
        batch = self.target_tokenizer(ids, offset=offset, mask=False)
        out = self.decoder(batch, memory.hidden, memory.mask, cache=cache, need_weights=need_weights)
        hidden = out.hidden[:, -1:] if last_only else out.hidden
        return self.lm_head(hidden), out

    def forward(self, source: Any, target_in: Tensor) -> Tensor:
        """Teacher forcing: ``target_in (B, T)`` = [bos] + target[:-1] → logits ``(B, T, V)``."""
        return self.decode(target_in, self.encode(source))[0]

"""Text ids held for batching: ``[bos] + pieces + [eos]`` rows stored flat, padded a batch at a time.

The one place the data layer wraps piece ids with bos/eos (through :meth:`SentencePieceVocab.wrap`,
the text tokenizer's own rule) and right-pads them with a vectorized gather.
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor

from mmformer.tokenizers.sentencepiece_vocab import PAD_ID, SentencePieceVocab


class Ragged:
    """Variable-length id rows stored flat: ``flat (sum L,)``, ``offsets (N,)``, ``lengths (N,)``."""

    def __init__(self, rows: Sequence[Sequence[int]]) -> None:
        self.lengths = torch.tensor([len(r) for r in rows], dtype=torch.long)
        self.offsets = torch.cumsum(self.lengths, 0) - self.lengths
        self.flat = torch.tensor([i for r in rows for i in r] or [PAD_ID], dtype=torch.long)

    def pad(self, idx: Tensor) -> Tensor:
        """Rows ``idx (B,)`` → right-padded ``(B, T)``, T = longest of them, pad = 0."""
        lens = self.lengths[idx]  # (B,)
        pos = torch.arange(int(lens.max()) if len(idx) else 1)  # (T,)
        mask = pos < lens[:, None]  # (B, T)
        gather = (self.offsets[idx, None] + pos).clamp_max(len(self.flat) - 1)  # (B, T)
        return torch.where(mask, self.flat[gather], PAD_ID)


def wrap_rows(rows: Sequence[list[int]], bos: bool, max_len: int) -> Ragged:
    """Piece-id rows → :class:`Ragged` ``[bos] + ids + [eos]`` rows of at most ``max_len`` ids (eos kept last)."""
    return Ragged([SentencePieceVocab.wrap(r, bos, True, max_len) for r in rows])

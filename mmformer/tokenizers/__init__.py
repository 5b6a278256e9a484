"""Modality tokenizers: raw inputs → :class:`TokenBatch`.

The contract (``TokenBatch``, ``ModalityTokenizer``, ``register_tokenizer``) is imported eagerly and
needs only torch; the built-in tokenizers are imported on first use (PEP 562), so code that only
needs the contract does not load torchaudio, sentencepiece or timm.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from mmformer.lazy import lazy_exports

from mmformer.tokenizers.base import (
    ENTRY_POINT_GROUP,
    ModalityTokenizer,
    TokenBatch,
    register_tokenizer,
    registered_tokenizers,
)

if TYPE_CHECKING:  # the lazy names below, for type checkers and import-graph tools
    from mmformer.tokenizers.audio import AudioBatch, AudioTokenizer
    from mmformer.tokenizers.image import ImagePatchTokenizer
    from mmformer.tokenizers.registry import list_tokenizers
    from mmformer.tokenizers.sentencepiece_vocab import SentencePieceVocab
    from mmformer.tokenizers.text import TextTokenizer
    from mmformer.tokenizers.trajectory import TrajectoryTokenizer

_LAZY = {
    "AudioBatch": "mmformer.tokenizers.audio",
    "AudioTokenizer": "mmformer.tokenizers.audio",
    "ImagePatchTokenizer": "mmformer.tokenizers.image",
    "SentencePieceVocab": "mmformer.tokenizers.sentencepiece_vocab",
    "TextTokenizer": "mmformer.tokenizers.text",
    "TrajectoryTokenizer": "mmformer.tokenizers.trajectory",
    "list_tokenizers": "mmformer.tokenizers.registry",
}

__all__ = [
    "ENTRY_POINT_GROUP", "ModalityTokenizer", "TokenBatch", "register_tokenizer", "registered_tokenizers",
    *_LAZY,
]


__getattr__, __dir__ = lazy_exports(__name__, _LAZY)

"""Modality tokenizers: raw inputs → :class:`TokenBatch`."""

from mmformer.tokenizers.base import (
    ENTRY_POINT_GROUP,
    ModalityTokenizer,
    TokenBatch,
    list_tokenizers,
    register_tokenizer,
)
from mmformer.tokenizers.image import ImagePatchTokenizer

__all__ = [
    "ENTRY_POINT_GROUP", "ImagePatchTokenizer", "ModalityTokenizer", "TokenBatch", "list_tokenizers",
    "register_tokenizer",
]
from mmformer.tokenizers.sentencepiece_vocab import SentencePieceVocab  # noqa: E402
from mmformer.tokenizers.text import TextTokenizer  # noqa: E402

__all__ += ["SentencePieceVocab", "TextTokenizer"]
from mmformer.tokenizers.trajectory import TrajectoryTokenizer  # noqa: E402

__all__ += ["TrajectoryTokenizer"]
from mmformer.tokenizers.audio import AudioBatch, AudioTokenizer  # noqa: E402

__all__ += ["AudioBatch", "AudioTokenizer"]

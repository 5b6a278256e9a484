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

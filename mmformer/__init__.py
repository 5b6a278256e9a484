"""mmformer: modality tokenizers feed a shared transformer backbone; heads and Lightning tasks on top.

The names below are imported on first access (PEP 562), so ``import mmformer.<submodule>`` loads only
what that submodule needs.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from mmformer.lazy import lazy_exports

if TYPE_CHECKING:  # the lazy names below, for type checkers and import-graph tools
    from mmformer.backbone import BackboneConfig, BackboneOutput, Block, Decoder, Encoder
    from mmformer.tokenizers.base import ModalityTokenizer, TokenBatch, register_tokenizer
    from mmformer.tokenizers.registry import list_tokenizers

__version__ = "0.1.0"

_LAZY = {
    "BackboneConfig": "mmformer.backbone",
    "BackboneOutput": "mmformer.backbone",
    "Block": "mmformer.backbone",
    "Decoder": "mmformer.backbone",
    "Encoder": "mmformer.backbone",
    "ModalityTokenizer": "mmformer.tokenizers.base",
    "TokenBatch": "mmformer.tokenizers.base",
    "register_tokenizer": "mmformer.tokenizers.base",
    "list_tokenizers": "mmformer.tokenizers.registry",
}
__all__ = list(_LAZY)


__getattr__, __dir__ = lazy_exports(__name__, _LAZY)

"""mmformer: modality tokenizers feed a shared transformer backbone; heads and Lightning tasks on top.

The names below are imported on first access (PEP 562), so ``import mmformer.<submodule>`` loads only
what that submodule needs.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

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


def __getattr__(name: str) -> Any:
    """Imports a public name on first access and caches it in the package."""
    if name not in _LAZY:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(import_module(_LAZY[name]), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))

"""Lazy re-exports for package ``__init__``s (PEP 562): a public name is imported on first access.

So ``from mmformer.tokenizers import TokenBatch`` loads no torchaudio or sentencepiece, and
``import mmformer.data`` loads no corpus builder, while every public name stays where users look.
"""

from __future__ import annotations

import importlib
import sys
from typing import Any, Callable, Mapping


def lazy_exports(package: str, exports: Mapping[str, str]) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """The ``__getattr__`` and ``__dir__`` of ``package`` re-exporting ``exports`` (name → dotted module).

    Usage in a package ``__init__``: ``__getattr__, __dir__ = lazy_exports(__name__, {"Name": "pkg.mod"})``.
    A resolved name is cached in the package, so later look-ups do not come back here.
    """

    def __getattr__(name: str) -> Any:
        if name not in exports:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(exports[name]), name)
        setattr(sys.modules[package], name, value)
        return value

    def __dir__() -> list[str]:
        return sorted(set(vars(sys.modules[package])) | set(exports))

    return __getattr__, __dir__

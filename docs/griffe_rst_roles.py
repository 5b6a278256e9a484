"""A griffe extension for the API reference: the docstrings' Sphinx roles as Markdown code.

The docstrings use reST cross-reference roles (``:func:`~mmformer.x.f```, ``:class:`Name```); mkdocstrings reads
them as Markdown, where they would show verbatim. Each becomes inline code of the name as Sphinx shows it
(``~`` keeps the last dotted part).
"""

from __future__ import annotations

import re
from typing import Any

from griffe import Extension, Object

_ROLE = re.compile(r":(?:py:)?(?:func|meth|class|mod|attr|data|obj|exc|const):`(~?)([^`]+)`")


def plain(text: str) -> str:
    """``text`` with every Sphinx role replaced by inline code of its target."""
    return _ROLE.sub(lambda m: f"`{m[2].rsplit('.', 1)[-1] if m[1] else m[2]}`", text)


class RstRoles(Extension):
    """Rewrites each object's docstring once it is loaded."""

    def on_object(self, *, obj: Object, **kwargs: Any) -> None:
        if obj.docstring is not None:
            obj.docstring.value = plain(obj.docstring.value)

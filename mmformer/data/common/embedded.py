"""The embedded-data hook every DataModule shares: a corpus builder the recipe names by dotted path.

A builder is a function ``build(data_dir) -> {split: path}`` (``embedded: corpora.keywords.build``), or an
object called the same way whose settings the recipe gives (``embedded: {class_path:
corpora.espeak.SpeechCorpus, init_args: {num_train: 20000}}``). It builds once into ``data_dir`` (it keeps its
own cache) and returns the paths of the splits it wrote, plus any facts a DataModule reads (class names,
say). mmformer never imports a builder's package: jsonargparse, or :func:`resolve_builder`, imports the path.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any, Callable, Mapping

Builder = Callable[[Path], Mapping[str, Any]]  # data_dir -> {split: path, ...}


def resolve_builder(builder: Builder | str) -> Builder:
    """``builder`` itself, or the function its dotted path names (a one-line error if it does not import)."""
    if callable(builder):
        return builder
    module, _, name = str(builder).rpartition(".")
    try:
        return getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError, ValueError) as err:
        raise ValueError(f"data.init_args.embedded: cannot import builder {builder!r} ({err})") from err


def builder_name(builder: Builder | str | None) -> str:
    """The dotted name a message shows for ``builder`` (its class's, for a configured builder object)."""
    if builder is None or isinstance(builder, str):
        return str(builder)
    named = builder if hasattr(builder, "__qualname__") else type(builder)
    return f"{named.__module__}.{named.__qualname__}"


def build_embedded(builder: Builder | str, data_dir: str | Path,
                   needed: tuple[str, ...] = ("train",)) -> dict[str, Any]:
    """Runs the builder (it caches what it builds) and returns what it returned, which must hold ``needed``."""
    built = dict(resolve_builder(builder)(Path(data_dir)))
    missing = [s for s in needed if built.get(s) is None]
    if missing:
        raise ValueError(f"builder {builder_name(builder)} returned no {', '.join(missing)} "
                         f"(got {sorted(built)})")
    return built

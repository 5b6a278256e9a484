"""A file given by path or held elsewhere (inside streaming shards): what the decoders open."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Protocol, runtime_checkable


@runtime_checkable
class Blob(Protocol):
    """An encoded file that is not on disk (e.g. :class:`~mmformer.data.shards.reading.ShardFile`):
    ``read_bytes()`` gives its bytes, ``str()`` names it in errors."""

    def read_bytes(self) -> bytes: ...


def open_source(file: str | Path | Blob, what: str) -> tuple[Path | io.BytesIO, str]:
    """``(what a decoder opens, its name)``: a path (checked to exist) or an in-memory stream of a blob.

    Raises:
        FileNotFoundError: a path that does not exist (``what`` says which kind of file).
    """
    if isinstance(file, (str, Path)):
        path = Path(file)
        if not path.is_file():
            raise FileNotFoundError(f"{what} file {path} does not exist")
        return path, str(path)
    return io.BytesIO(file.read_bytes()), str(file)

"""MNIST-style IDX files (``*-idx3-ubyte[.gz]``): the format of MNIST and Fashion-MNIST."""

from __future__ import annotations

import gzip
import math
import zlib
from pathlib import Path
from typing import BinaryIO

import numpy as np
import torch

_DTYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def read_idx(path: str | Path) -> torch.Tensor:
    """Reads one IDX file (optionally gzipped) into a tensor of its stored shape.

    Raises:
        FileNotFoundError: naming the path.
        ValueError: when the header or size does not match the IDX format.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"IDX file {path} does not exist")
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as f:
            magic = f.read(4)
            if len(magic) < 4 or magic[0] != 0 or magic[1] != 0 or magic[2] not in _DTYPES:
                raise ValueError(f"{path} is not an IDX file (bad magic number {magic.hex()})")
            dims = f.read(4 * magic[3])
            shape = tuple(int.from_bytes(dims[4 * i: 4 * i + 4], "big") for i in range(len(dims) // 4))
            dtype = np.dtype(_DTYPES[magic[2]])
            need = math.prod(shape) * dtype.itemsize
            # read what the header declares and one byte more, in chunks: a corrupt header's size allocates nothing
            payload = _read_at_most(f, need + 1) if len(shape) == magic[3] else b""
    except (OSError, EOFError, zlib.error) as e:  # gzip's errors for a corrupt or truncated stream
        raise ValueError(f"cannot read IDX file {path}: {e}") from e
    size = 4 + len(dims) + len(payload)
    if len(shape) != magic[3] or len(payload) != need:
        raise ValueError(f"{path} is truncated or corrupt: {size}{'+' if len(payload) > need else ''} bytes, header "
                         f"{shape} needs {4 + len(dims) + need}")
    array = np.frombuffer(payload, dtype=dtype).reshape(shape)
    return torch.from_numpy(array.astype(dtype.newbyteorder("=")).copy())


def _read_at_most(f: BinaryIO, n: int) -> bytes:
    chunks = []
    while n > 0 and (chunk := f.read(min(n, 1 << 20))):
        chunks.append(chunk)
        n -= len(chunk)
    return b"".join(chunks)


def find_idx(root: str | Path, stem: str) -> Path:
    """``root/stem`` or ``root/stem.gz``, whichever exists."""
    for name in (stem, stem + ".gz"):
        if (Path(root) / name).is_file():
            return Path(root) / name
    raise FileNotFoundError(f"neither {stem} nor {stem}.gz found in {root}")

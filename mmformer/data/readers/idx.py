"""MNIST-style IDX files (``*-idx3-ubyte[.gz]``): the format of MNIST and Fashion-MNIST."""

from __future__ import annotations

import gzip
from pathlib import Path

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
            data = f.read()
    except (OSError, EOFError) as e:
        raise ValueError(f"cannot read IDX file {path}: {e}") from e
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] not in _DTYPES:
        raise ValueError(f"{path} is not an IDX file (bad magic number {data[:4].hex()})")
    ndim = data[3]
    header = 4 + 4 * ndim
    shape = tuple(int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    dtype = np.dtype(_DTYPES[data[2]])
    expected = header + int(np.prod(shape)) * dtype.itemsize
    if len(data) != expected:
        raise ValueError(f"{path} is truncated or corrupt: {len(data)} bytes, header {shape} needs {expected}")
    array = np.frombuffer(data, dtype=dtype, offset=header).reshape(shape)
    return torch.from_numpy(array.astype(dtype.newbyteorder("=")).copy())


def find_idx(root: str | Path, stem: str) -> Path:
    """``root/stem`` or ``root/stem.gz``, whichever exists."""
    for name in (stem, stem + ".gz"):
        if (Path(root) / name).is_file():
            return Path(root) / name
    raise FileNotFoundError(f"neither {stem} nor {stem}.gz found in {root}")

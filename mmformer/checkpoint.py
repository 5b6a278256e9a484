"""Reading Lightning checkpoint files weights-only (never unpickling code), with errors that name the problem.

Building a task from its recipe and a checkpoint is :func:`mmformer.cli.recipes.load_task`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch


def read_checkpoint(path: str | Path, mmap: bool = False) -> dict[str, Any]:
    """``torch.load(path, weights_only=True)`` with errors that say what is wrong with the file.

    ``mmap=True`` maps the tensors from the file instead of reading them into memory (every FSDP rank reads
    the whole file, and keeps only its shard)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} does not exist")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)
    except Exception as e:  # truncated zip, wrong format, or objects that need unpickling code
        raise ValueError(
            f"checkpoint {path} cannot be read safely ({type(e).__name__}: {str(e).splitlines()[0][:200]}); "
            f"it is corrupt or truncated, or not a weights-only checkpoint — use an earlier checkpoint "
            f"(e.g. last.ckpt of the same run) or re-export it"
        ) from e
    if not isinstance(ckpt, dict) or "state_dict" not in ckpt:
        raise ValueError(f"{path} is not a Lightning checkpoint (no 'state_dict' entry)")
    return ckpt

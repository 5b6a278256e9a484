"""Shared helpers of the parity tests: peers are built small with random weights, offline."""

from __future__ import annotations

import os

import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # the peers are built from configs in code; nothing downloads
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

ATOL = 1e-4


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


def close(mine: torch.Tensor, theirs: torch.Tensor, atol: float = ATOL) -> None:
    torch.testing.assert_close(mine.float(), theirs.float(), rtol=0, atol=atol)

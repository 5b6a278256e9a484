"""Test-session settings."""

import os

import torch

# Under pytest-xdist every worker is its own process: one torch thread each keeps 2 workers on
# 2 cores from oversubscribing them (OpenMP spin-waits make that many times slower).
if os.environ.get("PYTEST_XDIST_WORKER"):
    torch.set_num_threads(1)
    os.environ.setdefault("OMP_NUM_THREADS", "1")

"""What every mmformer task module shares: exact resume of the random stream."""

from __future__ import annotations

from typing import Any

import pytorch_lightning as pl
import torch


class TaskModule(pl.LightningModule):
    """Base of the task modules.

    Checkpoints carry torch's RNG states (CPU and CUDA, as uint8 tensors, so they load with
    ``weights_only=True``). A resumed run restores them before its first training batch, so
    dropout and stochastic depth draw the same numbers as an uninterrupted run would.
    """

    def __init__(self) -> None:
        super().__init__()
        self._rng_to_restore: dict[str, Any] | None = None

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        rng = {"cpu": torch.get_rng_state()}
        if torch.cuda.is_available() and torch.cuda.is_initialized():
            rng["cuda"] = torch.cuda.get_rng_state_all()
        checkpoint["mmformer_rng"] = rng

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        self._rng_to_restore = checkpoint.get("mmformer_rng")

    def on_train_batch_start(self, batch: Any, batch_idx: int) -> None:
        # Restored here, not at load: loading and loop set-up may draw from the RNG in between.
        if self._rng_to_restore is not None:
            torch.set_rng_state(self._rng_to_restore["cpu"])
            if "cuda" in self._rng_to_restore and torch.cuda.is_available():
                torch.cuda.set_rng_state_all(self._rng_to_restore["cuda"])
            self._rng_to_restore = None

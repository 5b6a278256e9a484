"""What every mmformer task module shares: exact resume of the random stream, and a stop with the
step and batch named when the loss stops being finite."""

from __future__ import annotations

from typing import Any

import pytorch_lightning as pl
import torch


class NonFiniteLossError(FloatingPointError):
    """Training produced a NaN or infinite loss; the message names where."""


class TaskModule(pl.LightningModule):
    """Base of the task modules.

    Checkpoints carry torch's RNG states (CPU and CUDA, as uint8 tensors, so they load with
    ``weights_only=True``). A resumed run restores them before its first training batch, so
    dropout and stochastic depth draw the same numbers as an uninterrupted run would.

    A NaN/inf training loss is recorded on the device (no host sync per step) and raised as
    :class:`NonFiniteLossError` at the next logging step or checkpoint save, whichever comes
    first, so no checkpoint is written from poisoned weights.
    """

    def __init__(self) -> None:
        super().__init__()
        self._rng_to_restore: dict[str, Any] | None = None
        self._first_nonfinite: torch.Tensor | None = None  # global step of the first NaN/inf loss, -1 if none
        self._where: dict[int, tuple[int, int]] = {}  # step → (epoch, batch_idx) since the last check

    def on_train_batch_end(self, outputs: Any, batch: Any, batch_idx: int) -> None:
        loss = outputs["loss"] if isinstance(outputs, dict) else outputs
        if not isinstance(loss, torch.Tensor):
            return
        if self._first_nonfinite is None or self._first_nonfinite.device != loss.device:
            self._first_nonfinite = torch.full((), -1, dtype=torch.long, device=loss.device)
        step = self.global_step
        self._where[step] = (self.current_epoch, batch_idx)
        # Device-side bookkeeping only (a python scalar in torch.where needs no host-to-device copy).
        new = (~torch.isfinite(loss.detach())) & (self._first_nonfinite < 0)
        self._first_nonfinite = torch.where(new, step, self._first_nonfinite)
        if (step + 1) % max(1, self.trainer.log_every_n_steps) == 0:
            self._raise_if_nonfinite()

    def _raise_if_nonfinite(self) -> None:
        if self._first_nonfinite is None:
            return
        step = int(self._first_nonfinite)  # the one host sync, every few steps
        if step >= 0:
            epoch, batch_idx = self._where.get(step, (-1, -1))
            raise NonFiniteLossError(
                f"the training loss became NaN/inf at global step {step} (epoch {epoch}, batch {batch_idx}); "
                f"training stopped and no checkpoint was written from these weights. Check that batch's inputs "
                f"for NaN/inf, lower the learning rate, or set trainer.gradient_clip_val, then resume from "
                f"the last checkpoint"
            )
        self._where.clear()

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        self._raise_if_nonfinite()
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

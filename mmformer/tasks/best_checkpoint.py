"""Keeping the best checkpoint by a validation metric beside ``last.ckpt``: :class:`BestCheckpoint`.

The ``mmformer`` command adds one to every run (the ``best_checkpoint`` section of a recipe, beside
``trainer``); by default it watches the task's headline metric (:meth:`TaskModule.headline_metric`:
``val/bleu`` max for translation, ``val/wer`` min for speech, ``val/<b>2<a>_r@1`` max for contrastive,
``val/acc`` max for classification, ``val/return@<target>`` max for the decision transformer) and writes
``checkpoints/best.ckpt``::

    best_checkpoint:
      monitor: val/chrf      # any key the task logs at validation; null = no best checkpoint
      mode: max              # auto: min for loss/ppl/wer/cer, max otherwise
      save_top_k: 1          # >1 keeps best-step<N>.ckpt files instead of one best.ckpt

It never writes ``last.ckpt`` (the trainer's own ModelCheckpoint does) and saves only at the end of a
validation run, so a run without validation simply has no best checkpoint.
"""

from __future__ import annotations

from typing import Any, Literal

import pytorch_lightning as pl
from pytorch_lightning.callbacks import ModelCheckpoint

# Metrics where lower is better; every other one is maximized ("auto" mode).
LOWER_IS_BETTER = ("loss", "ppl", "wer", "cer", "ce", "ctc")


def auto_mode(key: str) -> Literal["min", "max"]:
    """``min`` for losses, perplexities and error rates (the last ``/`` part names it), else ``max``."""
    name = key.rsplit("/", 1)[-1].split("_")[0]
    return "min" if name in LOWER_IS_BETTER or name.startswith("loss") else "max"


class BestCheckpoint(ModelCheckpoint):
    """A ModelCheckpoint of the best validation score only (never ``last.ckpt``), its metric from the task.

    Args:
        monitor: the logged key to rank by; ``"auto"`` = the task's ``headline_metric()``; None = off.
        mode: ``min``/``max``; ``auto`` = :func:`auto_mode` of the key (or the task's own mode).
        save_top_k: checkpoints kept; 1 writes ``best.ckpt`` (overwritten when beaten), more write
            ``best-step<N>.ckpt`` each.
        filename: Lightning's filename template; None = as above.
    """

    def __init__(self, monitor: str | None = "auto", mode: Literal["auto", "min", "max"] = "auto",
                 save_top_k: int = 1, filename: str | None = None) -> None:
        if save_top_k == 0 or save_top_k < -1:
            raise ValueError(f"best_checkpoint.save_top_k must be >= 1 or -1 (all), got {save_top_k}; "
                             f"to keep no best checkpoint set best_checkpoint.monitor to null")
        # Lightning refuses save_top_k > 1 without a monitor: set for real once the monitor is known.
        super().__init__(monitor=None, mode="min", save_top_k=1, save_last=False, save_on_train_epoch_end=False,
                         auto_insert_metric_name=False)
        self._requested, self._requested_mode, self._top_k, self._filename = monitor, mode, save_top_k, filename

    @property
    def enabled(self) -> bool:
        return self.monitor is not None

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        super().setup(trainer, pl_module, stage)
        monitor, mode = self._requested, self._requested_mode
        if monitor == "auto":
            bind = getattr(pl_module, "bind_trainer_data", None)
            if bind is not None:  # the headline may follow the data (short references: not BLEU)
                bind(stage)
            headline = getattr(pl_module, "headline_metric", lambda: None)()
            monitor, task_mode = headline if headline is not None else (None, "min")
            mode = task_mode if mode == "auto" else mode
        if monitor is None:
            self.monitor = None
            return
        if stage == "fit":
            problem = getattr(pl_module, "monitor_problem", lambda key: None)(monitor)
            if problem:
                raise ValueError(f"best_checkpoint.monitor={monitor!r}: {problem}")
        mode = auto_mode(monitor) if mode == "auto" else mode
        if mode not in ("min", "max"):
            raise ValueError(f"best_checkpoint.mode must be auto, min or max, got {mode!r}")
        self.monitor, self.mode, self.save_top_k = monitor, mode, self._top_k
        self.kth_value = ModelCheckpoint(mode=mode).kth_value  # +inf for min, -inf for max
        self.filename = self._filename or ("best" if self._top_k == 1 else "best-step{step}")

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not self.enabled:
            return
        if not self._should_skip_saving_checkpoint(trainer) and self.monitor not in trainer.callback_metrics:
            logged = sorted(k for k in trainer.callback_metrics if k.startswith("val"))
            raise ValueError(
                f"best_checkpoint.monitor={self.monitor!r} was not logged by this validation run (logged: "
                f"{', '.join(logged) or 'nothing'}); set best_checkpoint.monitor to one of those keys, or to null "
                f"for no best checkpoint")
        super().on_validation_end(trainer, pl_module)

    # Saves happen at validation end only; a run without validation writes no best checkpoint.
    def on_train_batch_end(self, *args: Any, **kwargs: Any) -> None:
        return

    def on_train_epoch_end(self, *args: Any, **kwargs: Any) -> None:
        return

    def on_exception(self, *args: Any, **kwargs: Any) -> None:
        return


# ---- headline metrics of the text tasks (Seq2SeqTask, PrefixLMTask) -------------------------------------
DECODED_METRICS = ("bleu", "chrf", "wer", "cer", "exact")  # need decoded validation batches


def text_headline(names: list[str], val_generate_batches: int, fallback: str) -> tuple[str, str]:
    """``val/<first text metric>`` when validation decodes, else ``fallback`` (a loss-like key, min)."""
    if names and val_generate_batches >= 1:
        return f"val/{names[0]}", auto_mode(names[0])
    return fallback, "min"


def text_monitor_problem(key: str, names: list[str], val_generate_batches: int) -> str | None:
    """Why a text task will not log ``key`` on every validation run (the metric is not computed, or no
    batch is decoded for it), or None."""
    stage, _, name = key.partition("/")
    if stage != "val" or name not in DECODED_METRICS:
        return None
    if name not in names:
        return (f"the task computes {key} only when model.init_args.metrics lists {name!r} "
                f"(metrics: {names})")
    if val_generate_batches < 1:
        return (f"{key} is computed on the first val_generate_batches validation batches, decoded; "
                f"val_generate_batches={val_generate_batches}: set model.init_args.val_generate_batches >= 1")
    return None

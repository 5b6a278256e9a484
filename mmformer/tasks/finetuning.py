"""Fine-tuning a task from a recipe: the :class:`FineTuning` callback.

    trainer:
      callbacks:
        - class_path: mmformer.tasks.FineTuning
          init_args:
            pretrained: {model.backbone: {source: runs/pretrain_export, prefix: backbone.}}
            lora: {rank: 8, alpha: 16, targets: [qkv, proj]}
            train: [model.head.*]

It works on any task: names are the task's own (``model.backbone.blocks.0.attn.qkv.weight``). Layer-wise
lr decay is an optimizer setting: ``model.init_args.optim.layer_decay``.
"""

from __future__ import annotations

from typing import Any, Union

import pytorch_lightning as pl
from pytorch_lightning.utilities import rank_zero_info

from mmformer.finetune.lora import LoRAConfig
from mmformer.finetune.pretrained import load_pretrained
from mmformer.finetune.setup import FineTuneConfig, apply_finetune, frozen_batchnorms, pretrained_sources
from mmformer.tasks.base import TaskModule


class FineTuning(pl.Callback):
    """Adds LoRA and freezes parameters before the optimizer is built; loads pretrained weights at fit start.

    LoRA and freezing are set up in ``setup`` on every ``fit`` (so a resumed run trains the same
    parameters). The pretrained sources are loaded once, in ``on_fit_start`` — not when resuming from a
    checkpoint, whose weights win, and whose run needs no sources (under FSDP and DeepSpeed, which restore
    after ``on_fit_start``, they are loaded and then overwritten). A LoRA checkpoint records its layers,
    so ``test``, ``export`` and ``load_from_checkpoint`` rebuild them without this callback (see
    :class:`~mmformer.tasks.base.TaskModule`). BatchNorm layers whose parameters are all frozen stay in
    eval mode, so their running statistics stay frozen too.

    Args:
        pretrained: a source for the task's whole ``model`` (an ``mmformer export`` folder or a converted
            checkpoint folder), or ``{module name: source}``, a source being a path or
            ``{source: <path>, prefix: <tensor prefix in the source>}``.
        strict: each target module's tensors must all come from its source, with none left over.
        freeze: parameter-name patterns to freeze: globs (``model.backbone.blocks.[0-5].*``) or ``re:<regex>``.
        lora: LoRA ``rank``, ``alpha``, ``dropout`` and ``targets`` (linear layer names such as ``qkv``,
            ``proj``, ``fc1``, or patterns over full module names); freezes everything else but ``train``.
        train: with LoRA, parameter patterns that stay trainable (e.g. a new head, ``model.head.*``).
    """

    def __init__(
        self,
        pretrained: Union[str, dict[str, Union[str, dict[str, str]]], None] = None,
        strict: bool = True,
        freeze: list[str] | None = None,
        lora: LoRAConfig | None = None,
        train: list[str] | None = None,
    ) -> None:
        self.config = FineTuneConfig(pretrained, strict, list(freeze or []), lora, list(train or []))
        self._frozen_bn: list[Any] = []

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        # Before the optimizer is built and a checkpoint restored: which parameters train, and the LoRA layers.
        if stage != "fit":
            return
        if isinstance(pl_module, TaskModule) and pl_module.model_pending():  # callbacks are set up first: the
            pl_module.bind_trainer_data(stage)                                  # model may wait for the data
        summary = apply_finetune(pl_module, self.config, load=False)
        self._frozen_bn = frozen_batchnorms(pl_module)
        rank_zero_info(f"fine-tuning: {len(summary.lora)} LoRA layers, {summary.frozen} parameter tensors frozen; "
                       f"trainable parameters {summary.trainable:,} of {summary.total:,} "
                       f"({100 * summary.trainable / summary.total:.2f}%)")

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        # After a resumed run's checkpoint is restored (so trainer.ckpt_path is known): its weights win, and
        # the sources are not read at all (they may have moved since).
        sources = pretrained_sources(self.config)
        if not sources:
            return
        if trainer.ckpt_path is not None:
            rank_zero_info(f"fine-tuning: resuming from {trainer.ckpt_path}; pretrained weights not loaded")
            return
        loaded = load_pretrained(pl_module, sources, self.config.strict)
        rank_zero_info(f"fine-tuning: loaded pretrained weights into {', '.join(loaded)}")

    def on_train_batch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Any,
                             batch_idx: int) -> None:
        for m in self._frozen_bn:  # Lightning puts the model back in train mode after each validation
            m.eval()

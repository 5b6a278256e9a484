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
from mmformer.finetune.setup import FineTuneConfig, apply_finetune, frozen_batchnorms


class FineTuning(pl.Callback):
    """Loads pretrained weights, adds LoRA and freezes parameters before the optimizer is built.

    At ``fit`` start the pretrained sources are loaded once — not when resuming from a checkpoint,
    whose weights win. LoRA and freezing are set up on every ``fit`` (so a resumed run trains the same
    parameters); a LoRA checkpoint records its layers, so ``test``, ``export`` and ``load_from_checkpoint``
    rebuild them without this callback (see :class:`~mmformer.tasks.base.TaskModule`). BatchNorm layers
    whose parameters are all frozen stay in eval mode, so their running statistics stay frozen too.

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
        if stage != "fit":
            return
        resuming = trainer.ckpt_path is not None
        summary = apply_finetune(pl_module, self.config, load=not resuming)
        self._frozen_bn = frozen_batchnorms(pl_module)
        loaded = f"loaded {', '.join(summary.loaded)}; " if summary.loaded else (
            "pretrained weights skipped (resuming from a checkpoint); " if resuming and self.config.pretrained else "")
        rank_zero_info(f"fine-tuning: {loaded}{len(summary.lora)} LoRA layers; trainable parameters "
                       f"{summary.trainable:,} of {summary.total:,} ({100 * summary.trainable / summary.total:.2f}%)")

    def on_train_batch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Any,
                             batch_idx: int) -> None:
        for m in self._frozen_bn:  # Lightning puts the model back in train mode after each validation
            m.eval()

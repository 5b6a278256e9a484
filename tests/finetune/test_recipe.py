"""The fine-tune recipe as written: LoRA trains at most 1 % of its model's parameters."""

from __future__ import annotations

import warnings
from pathlib import Path

from mmformer.cli import main
from mmformer.tasks import FineTuning
from tests.data_free import build_without_data

RECIPE = Path(__file__).resolve().parents[2] / "tasks" / "finetune_image_classification.yaml"


def test_recipe_lora_trains_at_most_one_percent_of_the_parameters() -> None:
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*args parameter is intended to run from within Python.*")
        cli = main(["--config", str(RECIPE), "--trainer.logger=false"], run=False)
    (ft,) = [cb for cb in cli.trainer.callbacks if isinstance(cb, FineTuning)]
    assert ft.config.pretrained and ft.config.lora is not None
    task = build_without_data(cli.model)  # the recipe's classes come from its data
    ft.setup(cli.trainer, task, "fit")  # LoRA and freezing; the pretrained weights load at fit start
    trainable = sum(p.numel() for p in task.parameters() if p.requires_grad)
    total = sum(p.numel() for p in task.parameters())
    assert 0 < trainable <= 0.01 * total, f"{trainable:,} of {total:,} parameters train"
    lora = sum(p.numel() for n, p in task.named_parameters() if n.endswith(("lora_A", "lora_B")))
    head = sum(p.numel() for p in task.model.head.parameters())
    assert trainable == lora + head

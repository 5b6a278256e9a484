"""A fine-tune recipe run from a converted peer checkpoint: a small timm ViT (random weights, offline) saved
the hub way, `mmformer convert`ed, then `mmformer fit` of the digits ClassificationTask with the FineTuning
callback loading the converted tokenizer and backbone (LoRA on qkv) — the commands of the "From a converted
peer checkpoint" paragraph of tasks/finetune_image_classification.yaml."""

from __future__ import annotations

import os
from pathlib import Path

import pytorch_lightning as pl
import timm
import torch
import yaml
from safetensors.torch import load_file

from mmformer.cli import main as cli_main
from mmformer.cli.command import main
from mmformer.finetune.lora import LoRALinear

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # the peer is built in code; nothing downloads

ROOT = Path(__file__).resolve().parents[2]
DIGITS = str(ROOT / "tasks" / "image_classification_digits.yaml")
QUIET = ["--trainer.enable_progress_bar=false", "--trainer.enable_model_summary=false"]
STEPS = 3


class Capture(pl.Callback):
    """Keeps the task's weights as the first training batch sees them (after FineTuning's on_fit_start)."""

    weights: dict[str, torch.Tensor] = {}

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        Capture.weights = {k: v.detach().clone() for k, v in pl_module.state_dict().items()}


def _timm_vit() -> torch.nn.Module:
    """A timm ViT shaped for the digits data: 16x16 grey images, 4x4 patches, width 64, 2 blocks."""
    torch.manual_seed(0)
    return timm.create_model("vit_tiny_patch16_224", pretrained=False, img_size=16, patch_size=4, in_chans=1,
                             embed_dim=64, depth=2, num_heads=4, mlp_ratio=2.0, num_classes=5).eval()


def test_fine_tune_recipe_runs_from_a_converted_timm_vit(tmp_path: Path) -> None:
    from timm.models import save_for_hf

    peer = _timm_vit()
    save_for_hf(peer, str(tmp_path / "timm_vit"), safe_serialization=True)
    assert main(["convert", str(tmp_path / "timm_vit"), str(tmp_path / "converted")]) == 0
    converted = load_file(str(tmp_path / "converted" / "model.safetensors"))
    theirs = peer.state_dict()
    # The conversion is a renaming here: timm's qkv/patch tensors are the converted ones.
    assert torch.equal(converted["backbone.blocks.0.attn.qkv.weight"], theirs["blocks.0.attn.qkv.weight"])
    assert torch.equal(converted["tokenizer.proj.weight"], theirs["patch_embed.proj.weight"])

    src = str(tmp_path / "converted")
    finetune = {"pretrained": {"model.tokenizer": {"source": src, "prefix": "tokenizer."},
                               "model.backbone": {"source": src, "prefix": "backbone."}},
                "lora": {"rank": 2, "alpha": 4, "dropout": 0.0, "targets": ["qkv"]}, "train": ["model.head.*"]}
    # The task is shaped as the peer: a plain patch tokenizer with a CLS token (no conv stem), timm's widths.
    cfg = {"trainer": {"max_steps": STEPS, "num_sanity_val_steps": 0, "limit_val_batches": 1, "logger": False,
                       "enable_checkpointing": False,
                       "callbacks": [{"class_path": "mmformer.tasks.FineTuning", "init_args": finetune},
                                     {"class_path": "tests.finetune.test_from_converted.Capture"}]},
           "model": {"init_args": {
               "model": {"tokenizer": {"class_path": "mmformer.tokenizers.ImagePatchTokenizer",
                                       "init_args": {"image_size": 16, "in_chans": 1, "patch_size": 4,
                                                     "stem_channels": None, "cls_token": True, "pos_embed": "learned"}},
                         "backbone": {"dim": 64, "depth": 2, "num_heads": 4, "mlp_ratio": 2.0}},
               "optim": {"lr": 0.01}}}}
    (tmp_path / "from_converted.yaml").write_text(yaml.safe_dump(cfg))
    Capture.weights = {}
    cli = cli_main(["fit", "--config", DIGITS, "--config", str(tmp_path / "from_converted.yaml"),
                "--trainer.default_root_dir", str(tmp_path / "run"), *QUIET])

    # At fit start every converted tokenizer/backbone tensor is in the task; the peer's head is not.
    loaded = {k: v for k, v in converted.items() if k.startswith(("tokenizer.", "backbone."))}
    assert loaded and all(torch.equal(Capture.weights[f"model.{k}"], v) for k, v in loaded.items())
    assert torch.equal(Capture.weights["model.backbone.blocks.1.attn.qkv.weight"], theirs["blocks.1.attn.qkv.weight"])
    assert Capture.weights["model.head.fc.weight"].shape[0] == 10  # a fresh head for the new label set

    # The fit ran: STEPS optimizer steps moved only LoRA and the head; the pretrained weights stayed.
    trainer = cli.trainer
    task = trainer.lightning_module
    assert trainer.global_step == STEPS
    assert sum(isinstance(m, LoRALinear) for m in task.modules()) == 2
    after = task.state_dict()
    assert all(torch.equal(after[f"model.{k}"], v) for k, v in loaded.items())
    assert any(after[k].abs().sum() > 0 for k in after if k.endswith("lora_B"))  # lora_B starts at zero
    assert not torch.equal(after["model.head.fc.weight"], Capture.weights["model.head.fc.weight"])

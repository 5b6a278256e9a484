"""The FineTuning callback in real runs: pretrained weights from an `mmformer export` at fit start, skipped on
resume; a LoRA run resumes exactly; its checkpoint tests and exports (LoRA merged) without the callback."""

from __future__ import annotations

from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch
import yaml
from safetensors.torch import load_file

from mmformer.cli import main
from mmformer.cli.export import export_model, load_exported
from mmformer.finetune.lora import LoRALinear
from mmformer.cli.recipes import load_task

ROOT = Path(__file__).resolve().parents[2]
DIGITS = str(ROOT / "tasks" / "image_classification_digits.yaml")
QUIET = ["--trainer.enable_progress_bar=false", "--trainer.enable_model_summary=false"]


class Capture(pl.Callback):
    """Keeps the task's weights as the first training batch sees them."""

    weights: dict[str, torch.Tensor] = {}

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        Capture.weights = {k: v.detach().clone() for k, v in pl_module.state_dict().items()}


def _fit(tmp_path: Path, name: str, finetune: dict | None, *extra: str) -> pl.Trainer:
    callbacks = [{"class_path": "pytorch_lightning.callbacks.ModelCheckpoint",
                  "init_args": {"every_n_train_steps": 2, "save_top_k": -1, "filename": "{step}"}},
                 {"class_path": "tests.finetune.test_fit.Capture"}]
    if finetune is not None:
        callbacks.append({"class_path": "mmformer.tasks.FineTuning", "init_args": finetune})
    cfg = tmp_path / f"{name}.yaml"
    cfg.write_text(yaml.safe_dump({"trainer": {"max_steps": 4, "num_sanity_val_steps": 0, "limit_val_batches": 2,
                                               "deterministic": True, "log_every_n_steps": 1,
                                               "callbacks": callbacks}}))
    cli = main(["fit", "--config", DIGITS, "--config", str(cfg), "--trainer.default_root_dir",
                str(tmp_path / name), *QUIET, *extra])
    return cli.trainer


def test_fine_tune_from_an_export_with_lora_resumes_exactly_and_exports_merged(tmp_path: Path) -> None:
    # The checkpoint a user has: a short run, exported.
    base = _fit(tmp_path, "base", None)
    export = tmp_path / "export"
    export_model(DIGITS, base.checkpoint_callback.last_model_path, export)
    exported = load_file(str(export / "model.safetensors"))

    lora = {"pretrained": {"model.tokenizer": {"source": str(export), "prefix": "tokenizer."},
                           "model.backbone": {"source": str(export), "prefix": "backbone."}},
            "lora": {"rank": 2, "alpha": 4, "targets": ["qkv", "proj"]}, "train": ["model.head.*"]}
    straight = _fit(tmp_path, "lora", lora)
    for k, v in exported.items():  # values equal after set-up; the head is not named, so it is fresh
        if not k.startswith("head."):
            assert torch.equal(Capture.weights[f"model.{k}"], v), k
    assert not torch.equal(Capture.weights["model.head.fc.weight"], exported["head.fc.weight"])
    task = straight.lightning_module
    assert sum(isinstance(m, LoRALinear) for m in task.modules()) == 2 * 2
    assert {n for n, p in task.named_parameters() if p.requires_grad} == {
        n for n, _ in task.named_parameters() if n.endswith(("lora_A", "lora_B")) or n.startswith("model.head.")}

    # Resume from step 2; the pretrained source is gone by now, and resuming does not read it.
    ckpts = tmp_path / "lora" / "version_0" / "checkpoints"
    gone = dict(lora, pretrained={"model.backbone": str(tmp_path / "moved_away")})
    resumed = _fit(tmp_path, "resumed", gone, "--ckpt_path", str(ckpts / "step=2.ckpt"))
    want, got = straight.lightning_module.state_dict(), resumed.lightning_module.state_dict()
    assert want.keys() == got.keys()
    for k in want:
        assert torch.equal(want[k], got[k]), k
    with pytest.raises(FileNotFoundError, match="moved_away"):  # a fresh run does read it
        _fit(tmp_path, "fresh", gone)

    # test/export need no fine-tuning settings: the checkpoint records its LoRA layers.
    ckpt = str(ckpts / "step=4.ckpt")
    loaded, _ = load_task(DIGITS, ckpt)
    out = tmp_path / "finetuned_export"
    export_model(DIGITS, ckpt, out)
    assert not any("lora" in k for k in load_file(str(out / "model.safetensors")))
    plain = load_exported(out)
    x = torch.randn(8, 1, 16, 16, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert (plain(x) - loaded.model(x)).abs().max() <= 1e-5

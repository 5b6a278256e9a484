"""Contrastive checkpoints, exports and configs from before the towers were named ``a``/``b``
(``model.image_*``/``model.text_*`` keys, ``image_tokenizer:``... arguments) still load, or say the new
name. The weights are the old package's (tests/fixtures/legacy/contrastive.pt)."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import save_file

from mmformer.backbone import BackboneConfig
from mmformer.cli.command import main as console_main
from mmformer.cli.export import load_exported
from mmformer.tasks import ContrastiveTask
from mmformer.finetune.lora import LoRALinear
from mmformer.tasks.base import LORA_KEY
from mmformer.tasks.checkpoint_fit import WRITER_KEY
from mmformer.tasks.legacy import FORMAT_KEY, upgrade_state_dict
from mmformer.tokenizers import ImagePatchTokenizer, TextTokenizer
from tests.tasks.test_legacy_checkpoints import FIXTURES, cfg, contrastive
from mmformer.models.config import ContrastiveConfig

ROOT = Path(__file__).resolve().parents[2]


def _old_checkpoint(version: int) -> dict:
    """The fixture as a checkpoint of layout ``version`` (0 and 1 hold the same contrastive keys),
    with the writer record format 1 wrote: backbones by their old module names."""
    ckpt = torch.load(FIXTURES / "contrastive.pt", weights_only=True)
    if version:
        ckpt[FORMAT_KEY] = version
    ckpt[WRITER_KEY] = {"class": "mmformer.tasks.contrastive.ContrastiveTask",
                        "backbones": {"model.image_backbone": asdict(cfg())}}
    return ckpt


def _assert_computes_the_old_outputs(task, ckpt: dict) -> None:
    with torch.no_grad():
        out = task.model(ckpt["inputs"]["images"], ckpt["inputs"]["ids"])
    torch.testing.assert_close(out.embeds_a, ckpt["outputs"]["image_embeds"])
    torch.testing.assert_close(out.embeds_b, ckpt["outputs"]["text_embeds"])


@pytest.mark.parametrize("version", [0, 1])
def test_image_text_keys_load_into_towers_a_and_b(version: int) -> None:
    ckpt = _old_checkpoint(version)
    assert any(k.startswith("model.image_tokenizer.") for k in ckpt["state_dict"])
    task = contrastive().eval()
    task.on_load_checkpoint(ckpt)  # what Lightning calls before its strict load
    assert list(ckpt["state_dict"]) == list(task.state_dict())  # every key renamed, in order
    task.load_state_dict(ckpt["state_dict"], strict=True)
    _assert_computes_the_old_outputs(task, ckpt)
    assert list(ckpt[WRITER_KEY]["backbones"]) == ["model.backbone_a"]


def test_an_old_writer_that_does_not_fit_is_compared_under_the_new_names() -> None:
    deeper = BackboneConfig(**{**asdict(cfg()), "depth": 2})
    task = ContrastiveTask(ContrastiveConfig(lambda d: ImagePatchTokenizer(d, image_size=8, patch_size=4, cls_token=False), lambda d: TextTokenizer(d, vocab_size=16, max_len=8), deeper, pool_a="attention", embed_dim=8))
    with pytest.raises(ValueError, match=r"model\.backbone_a \(checkpoint vs this run\): depth 1 vs 2") as err:
        task.on_load_checkpoint(_old_checkpoint(1))
    assert "only in" not in str(err.value)


def test_the_tower_rename_is_pure_idempotent_and_only_for_older_layouts() -> None:
    old = _old_checkpoint(1)["state_dict"]
    new = upgrade_state_dict("ContrastiveTask", old, 1)
    assert "model.image_backbone.blocks.0.attn.qkv.weight" in old  # not modified
    assert {k.split(".")[1] for k in new} == {"tokenizer_a", "tokenizer_b", "backbone_a", "pool_a",
                                              "proj_a", "proj_b", "logit_scale"}
    assert upgrade_state_dict("ContrastiveTask", new, 0) == new
    assert upgrade_state_dict("ContrastiveTask", old, 2) == old  # a current checkpoint is left alone


def test_an_export_with_the_old_names_loads(tmp_path: Path) -> None:
    """A version-1 export: ``task.model`` keys without ``model.`` and the old init arguments."""
    ckpt = _old_checkpoint(0)
    weights = {k[len("model."):]: v.contiguous() for k, v in ckpt["state_dict"].items()}
    save_file(weights, str(tmp_path / "model.safetensors"))
    init_args = {
        "image_tokenizer": {"class_path": "mmformer.tokenizers.ImagePatchTokenizer",
                            "init_args": {"image_size": 8, "patch_size": 4, "cls_token": False}},
        "text_tokenizer": {"class_path": "mmformer.tokenizers.TextTokenizer",
                           "init_args": {"vocab_size": 16, "max_len": 8}},
        "backbone": asdict(cfg()), "image_pool": "attention", "embed_dim": 8}
    doc = {"format": "mmformer-export", "version": 1,
           "model": {"class_path": "mmformer.tasks.contrastive.ContrastiveTask", "init_args": init_args}}
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(doc, sort_keys=False))
    model = load_exported(tmp_path)
    assert model.pool_a.pool == "attention" and model.pool_a.attn is not None
    with torch.no_grad():
        out = model(ckpt["inputs"]["images"], ckpt["inputs"]["ids"])
    torch.testing.assert_close(out.embeds_a, ckpt["outputs"]["image_embeds"])


def test_a_config_with_an_old_argument_name_says_the_new_one(tmp_path: Path,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    old = tmp_path / "old_clip.yaml"
    old.write_text((ROOT / "tasks" / "clip.yaml").read_text().replace("    tokenizer_a:", "    image_tokenizer:"))
    assert console_main(["fit", "--config", str(old), "--print_config"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == f"error: unknown key 'image_tokenizer' in model.init_args.model: it was renamed to 'tokenizer_a' (in {old})"
    assert console_main(["fit", "--config", str(ROOT / "tasks" / "clip.yaml"), "--model.init_args.text_pool=cls",
                         "--print_config"]) == 2
    # the flat task argument of before the model config: its current place, under its new name
    assert ("unknown key 'text_pool' in model.init_args: the model's settings moved under 'model' (the model config), "
            "so write it as model.init_args.model.pool_b") in capsys.readouterr().err


def test_lora_layers_recorded_under_the_old_names_are_rebuilt_in_tower_a() -> None:
    ckpt = _old_checkpoint(1)
    qkv = "model.image_backbone.blocks.0.attn.qkv"
    out_features, in_features = ckpt["state_dict"][f"{qkv}.weight"].shape
    ckpt["state_dict"][f"{qkv}.lora_A"] = torch.randn(2, in_features)
    ckpt["state_dict"][f"{qkv}.lora_B"] = torch.zeros(out_features, 2)  # a zero update: the old outputs hold
    ckpt[LORA_KEY] = {qkv: {"rank": 2, "alpha": 2.0, "dropout": 0.0}}
    task = contrastive().eval()
    task.on_load_checkpoint(ckpt)
    task.load_state_dict(ckpt["state_dict"], strict=True)
    assert isinstance(task.model.backbone_a.blocks[0].attn.qkv, LoRALinear)
    _assert_computes_the_old_outputs(task, ckpt)

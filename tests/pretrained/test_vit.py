"""ViT parity: timm and HF ViTs built small with random weights, saved the standard way, converted
by mmformer.pretrained, give the same logits to 1e-4; export back round-trips into the peer."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import timm
import torch
from safetensors.torch import load_file, save_file

from mmformer.pretrained import CheckpointError, from_pretrained
from mmformer.pretrained.vit import export
from tests.pretrained.conftest import close


def _timm_vit(**kw) -> torch.nn.Module:
    args = dict(img_size=32, patch_size=8, embed_dim=64, depth=2, num_heads=4, num_classes=5, **kw)
    return timm.create_model("vit_tiny_patch16_224", pretrained=False, **args).eval()


def _hf_vit():
    from transformers import ViTConfig, ViTForImageClassification

    cfg = ViTConfig(hidden_size=64, num_hidden_layers=2, num_attention_heads=4, intermediate_size=128,
                    image_size=32, patch_size=8, num_labels=5)
    return ViTForImageClassification(cfg).eval()


@pytest.mark.parametrize("global_pool", ["token", "avg"])
def test_timm_folder_converts_and_exports_back(tmp_path: Path, global_pool: str) -> None:
    from timm.models import save_for_hf

    peer = _timm_vit(global_pool=global_pool)
    save_for_hf(peer, str(tmp_path / "timm"), safe_serialization=True)
    model = from_pretrained(tmp_path / "timm")
    x = torch.randn(3, 3, 32, 32)
    close(model(x), peer(x))

    export(model, tmp_path / "back", flavor="timm")
    cfg = json.loads((tmp_path / "back" / "config.json").read_text())
    again = timm.create_model(cfg["architecture"], pretrained=False, num_classes=cfg["num_classes"],
                              **cfg["model_args"]).eval()
    again.load_state_dict(load_file(str(tmp_path / "back" / "model.safetensors")), strict=True)
    close(again(x), peer(x))


def test_hf_vit_converts_and_exports_back(tmp_path: Path) -> None:
    from transformers import ViTForImageClassification

    peer = _hf_vit()
    peer.save_pretrained(tmp_path / "hf")
    model = from_pretrained(tmp_path / "hf")
    x = torch.randn(3, 3, 32, 32)
    close(model(x), peer(pixel_values=x).logits)

    export(model, tmp_path / "back")
    again = ViTForImageClassification.from_pretrained(tmp_path / "back").eval()
    close(again(pixel_values=x).logits, peer(pixel_values=x).logits)


def test_headless_vit_model_loads_into_the_backbone(tmp_path: Path) -> None:
    from transformers import ViTConfig, ViTModel

    from mmformer.pretrained import load_into

    peer = ViTModel(ViTConfig(hidden_size=64, num_hidden_layers=2, num_attention_heads=4, intermediate_size=128,
                              image_size=32, patch_size=8)).eval()
    peer.save_pretrained(tmp_path / "headless")
    with pytest.raises(CheckpointError, match=r"missing tensors \['head\.fc\.bias', 'head\.fc\.weight'\]"):
        from_pretrained(tmp_path / "headless")
    model = _hf_vit_as_mmformer(tmp_path)
    load_into(model.tokenizer, tmp_path / "headless", prefix="tokenizer.")
    load_into(model.backbone, tmp_path / "headless", prefix="backbone.")
    x = torch.randn(2, 3, 32, 32)
    close(model.backbone(model.tokenizer(x)).hidden, peer(pixel_values=x).last_hidden_state)


def _hf_vit_as_mmformer(tmp_path: Path):
    _hf_vit().save_pretrained(tmp_path / "other")
    return from_pretrained(tmp_path / "other")


def test_wrong_vit_checkpoints_name_the_tensor_or_field(tmp_path: Path) -> None:
    _hf_vit().save_pretrained(tmp_path / "hf")
    weights = tmp_path / "hf" / "model.safetensors"
    state = load_file(str(weights))
    cfg_path = tmp_path / "hf" / "config.json"
    cfg = json.loads(cfg_path.read_text())

    save_file({k: v for k, v in state.items() if "layer.1.intermediate" not in k}, str(weights))
    with pytest.raises(CheckpointError, match=r"no tensor 'vit\.encoder\.layer\.1\.intermediate\.dense\.weight'"):
        from_pretrained(tmp_path / "hf")
    save_file({**state, "classifier.weight": torch.zeros(7, 64), "classifier.bias": torch.zeros(7)}, str(weights))
    with pytest.raises(CheckpointError, match=r"head\.fc\.weight: checkpoint \(7, 64\) vs model \(5, 64\)"):
        from_pretrained(tmp_path / "hf")
    save_file(state, str(weights))
    cfg_path.write_text(json.dumps({**cfg, "model_type": "swin"}))
    with pytest.raises(CheckpointError, match="model_type 'swin' is not supported"):
        from_pretrained(tmp_path / "hf")
    cfg_path.write_text(json.dumps({k: v for k, v in cfg.items() if k != "hidden_size"} | {"model_type": "vit"}))
    with pytest.raises(CheckpointError, match="no field 'hidden_size'"):
        from_pretrained(tmp_path / "hf")

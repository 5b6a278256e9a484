"""Loading pretrained weights by module prefix: values land where named; bad prefixes and sources are named."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from mmformer.finetune.lora import LoRAConfig
from mmformer.finetune.setup import FineTuneConfig, apply_finetune
from mmformer.pretrained.common import CheckpointError
from tests.finetune.helpers import Holder


def _weights_file(tmp_path: Path, seed: int = 7) -> tuple[Path, dict[str, torch.Tensor]]:
    torch.manual_seed(seed)
    state = {k: v.clone() for k, v in Holder().model.state_dict().items()}  # a whole Classifier, as exported
    path = tmp_path / "model.safetensors"
    save_file(state, str(path))
    return path, state


def test_whole_model_and_parts_load_by_prefix(tmp_path: Path) -> None:
    path, state = _weights_file(tmp_path)
    whole = Holder()
    apply_finetune(whole, FineTuneConfig(pretrained=str(path)))  # a bare path: the task's `model`
    for k, v in whole.model.state_dict().items():
        assert torch.equal(v, state[k]), k

    part = Holder()
    head_before = {k: v.clone() for k, v in part.model.head.state_dict().items()}
    summary = apply_finetune(part, FineTuneConfig(pretrained={
        "model.backbone": {"source": str(path), "prefix": "backbone."},
        "model.tokenizer": {"source": str(path), "prefix": "tokenizer."}}))
    assert summary.loaded == ["model.backbone", "model.tokenizer"]
    for k, v in part.model.backbone.state_dict().items():
        assert torch.equal(v, state[f"backbone.{k}"]), k
    for k, v in part.model.head.state_dict().items():
        assert torch.equal(v, head_before[k]), k  # not named: untouched


def test_pretrained_weights_load_before_lora_is_added(tmp_path: Path) -> None:
    path, state = _weights_file(tmp_path)
    m = Holder()
    apply_finetune(m, FineTuneConfig(pretrained=str(path), lora=LoRAConfig(rank=2, targets=["qkv"]),
                                     train=["model.head.*"]))
    sd = m.model.state_dict()
    assert all(torch.equal(sd[k], v) for k, v in state.items())
    assert any(k.endswith("lora_A") for k in sd)


def test_a_prefix_naming_no_module_is_an_error_naming_it(tmp_path: Path) -> None:
    path, _ = _weights_file(tmp_path)
    with pytest.raises(ValueError, match=r"pretrained prefix 'model.encoder' names no module.*'model'"):
        apply_finetune(Holder(), FineTuneConfig(pretrained={"model.encoder": str(path)}))


def test_a_missing_source_is_an_error_naming_it(tmp_path: Path) -> None:
    missing = tmp_path / "no_such_export"
    with pytest.raises(FileNotFoundError, match=f"pretrained source '{missing}' for 'model.backbone' does not exist"):
        apply_finetune(Holder(), FineTuneConfig(pretrained={"model.backbone": str(missing)}))


def test_a_source_that_does_not_fit_names_the_tensors(tmp_path: Path) -> None:
    path, _ = _weights_file(tmp_path)
    with pytest.raises(CheckpointError, match="blocks.0.attn.qkv.weight"):
        apply_finetune(Holder(dim=32), FineTuneConfig(pretrained={"model.backbone": {"source": str(path),
                                                                                     "prefix": "backbone."}}))
    with pytest.raises(ValueError, match="must be a path or"):
        apply_finetune(Holder(), FineTuneConfig(pretrained={"model.backbone": {"path": str(path)}}))

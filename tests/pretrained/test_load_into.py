"""load_into: mmformer weights (an export folder or a .safetensors file) into an existing module, with
every missing / unexpected tensor and shape mismatch named; hub ids fail clearly without a network."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import save_file

from mmformer.backbone import BackboneConfig, Encoder
from mmformer.cli.export import FORMAT, VERSION, _plain_tensors
from mmformer.heads import ClassificationHead
from mmformer.models.classifier import Classifier
from mmformer.pretrained import CheckpointError, load_into
from mmformer.tokenizers.image import ImagePatchTokenizer


def _classifier(depth: int = 2, dim: int = 32) -> Classifier:
    tok = ImagePatchTokenizer(dim, image_size=16, patch_size=8, in_chans=1)
    return Classifier(tok, Encoder(BackboneConfig(dim=dim, depth=depth, num_heads=4)), ClassificationHead(dim, 3))


def _export(model: torch.nn.Module, folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    save_file(_plain_tensors(model.state_dict()), str(folder / "model.safetensors"))
    doc = {"format": FORMAT, "version": VERSION, "model": {"class_path": "unused.in.load_into"}}
    (folder / "config.yaml").write_text(yaml.safe_dump(doc))
    return folder


def test_export_folder_and_file_load_into_a_fresh_model(tmp_path: Path) -> None:
    torch.manual_seed(0)
    src, dst = _classifier().eval(), _classifier().eval()
    x = torch.randn(2, 1, 16, 16)
    assert not torch.allclose(src(x), dst(x))
    folder = _export(src, tmp_path / "exp")
    load_into(dst, folder)
    torch.testing.assert_close(dst(x), src(x), rtol=0, atol=0)
    other = _classifier().eval()
    load_into(other, folder / "model.safetensors")  # a plain file works too
    torch.testing.assert_close(other(x), src(x), rtol=0, atol=0)


def test_prefix_loads_one_part(tmp_path: Path) -> None:
    src, dst = _classifier(), _classifier()
    folder = _export(src, tmp_path / "exp")
    load_into(dst.backbone, folder, prefix="backbone.")
    for k, v in dst.backbone.state_dict().items():
        assert torch.equal(v, src.backbone.state_dict()[k]), k
    assert not torch.equal(dst.head.fc.weight, src.head.fc.weight)  # only the selected part moved
    with pytest.raises(CheckpointError, match="no tensor under the prefix 'nothing.'"):
        load_into(dst.backbone, folder, prefix="nothing.")


def test_wrong_checkpoints_name_the_tensor(tmp_path: Path) -> None:
    folder = _export(_classifier(depth=1), tmp_path / "shallow")
    with pytest.raises(CheckpointError, match=r"missing tensors \['backbone\.blocks\.1\."):
        load_into(_classifier(depth=2), folder)
    with pytest.raises(CheckpointError, match=r"unexpected tensors \['backbone\.blocks\.1\."):
        load_into(_classifier(depth=1), _export(_classifier(depth=2), tmp_path / "deep"))
    with pytest.raises(CheckpointError, match=r"shape mismatches \['backbone\.blocks\.0\.attn\.proj\.bias: "
                                              r"checkpoint \(48,\) vs model \(32,\)"):
        load_into(_classifier(dim=32), _export(_classifier(dim=48), tmp_path / "wide"), strict=False)
    partial = _classifier(depth=2)
    load_into(partial, folder, strict=False)  # non-strict: the first block loads, the second keeps its weights


def test_hub_id_without_network_names_the_id(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(FileNotFoundError, match=r"hub id 'nobody/no-such-model'.*no network.*local folder"):
        load_into(_classifier(), "nobody/no-such-model")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_into(_classifier(), "./no/such/folder")

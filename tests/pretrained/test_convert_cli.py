"""`mmformer convert <source> <out_dir>`: a peer checkpoint converted once into an mmformer export, then read by
from_pretrained, load_into and load_exported without converting again; a bad source is one error line and exit status 1."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from mmformer.cli.command import main
from mmformer.models.exported import load_exported
from mmformer.pretrained import from_pretrained, load_into
from tests.pretrained.conftest import close


def test_convert_writes_a_folder_that_loads_without_the_peer_layout(tmp_path: Path, capsys) -> None:
    from transformers import BertConfig, BertForMaskedLM

    peer = BertForMaskedLM(BertConfig(vocab_size=50, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                                      intermediate_size=64, max_position_embeddings=16,
                                      initializer_range=0.2)).eval()  # 0.02: near-uniform attention, blind to q/k
    peer.save_pretrained(tmp_path / "bert")
    assert main(["convert", str(tmp_path / "bert"), str(tmp_path / "out")]) == 0
    assert (tmp_path / "out" / "model.safetensors").is_file()
    ids = torch.randint(1, 50, (2, 7))
    model = from_pretrained(tmp_path / "out")
    close(model(ids), peer(input_ids=ids).logits)
    close(load_exported(tmp_path / "out")(ids), peer(input_ids=ids).logits)  # an export: no transformers needed
    with torch.no_grad():  # the check sees attention: a model without q and k is far off
        model.backbone.blocks[0].attn.qkv.weight[:64].zero_()
    assert (model(ids) - peer(input_ids=ids).logits).abs().max() > 1e-2
    fresh = from_pretrained(tmp_path / "bert")
    with torch.no_grad():
        fresh.backbone.blocks[0].mlp.fc1.weight.zero_()
    load_into(fresh.backbone, tmp_path / "out", prefix="backbone.")
    close(fresh(ids), peer(input_ids=ids).logits)


def test_convert_of_a_missing_source_is_one_error_line(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["convert", str(tmp_path / "nothing"), str(tmp_path / "out")]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "nothing" in err and "does not exist" in err

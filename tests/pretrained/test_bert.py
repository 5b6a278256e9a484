"""BERT parity: a small random BertForMaskedLM saved with save_pretrained, converted to a MaskedLM: the
same MLM logits and encoder states with padding, and export back into transformers."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from mmformer.pretrained import CheckpointError, from_pretrained
from mmformer.pretrained.bert import export
from tests.pretrained.conftest import close

PAD, LENGTHS = 0, (12, 9, 5)


@pytest.fixture()
def peer_dir(tmp_path: Path):
    from transformers import BertConfig, BertForMaskedLM

    cfg = BertConfig(vocab_size=101, hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
                     intermediate_size=128, max_position_embeddings=32, pad_token_id=PAD,
                     initializer_range=0.2)  # sharp attention: 0.02 makes it nearly uniform, blind to q/k
    peer = BertForMaskedLM(cfg).eval()
    with torch.no_grad():  # token type 0 must matter: a random, not a zero, row
        peer.bert.embeddings.token_type_embeddings.weight.normal_()
    peer.save_pretrained(tmp_path / "bert")
    return peer, tmp_path / "bert"


def _ids() -> tuple[torch.Tensor, torch.Tensor]:
    ids = torch.randint(1, 101, (len(LENGTHS), max(LENGTHS)))
    mask = torch.arange(max(LENGTHS))[None] < torch.tensor(LENGTHS)[:, None]
    return ids.masked_fill(~mask, PAD), mask


def test_mlm_logits_with_padding_match(peer_dir) -> None:
    peer, folder = peer_dir
    model = from_pretrained(folder)
    ids, mask = _ids()
    out = peer(input_ids=ids, attention_mask=mask.long(), output_hidden_states=True)
    close(model(ids)[mask], out.logits[mask])
    close(model.encode(ids).hidden[mask], out.hidden_states[-1][mask])
    # Padding changes nothing for the real tokens: the shortest row alone gives the same logits.
    n = LENGTHS[-1]
    close(model(ids[-1:, :n])[0], model(ids)[-1, :n])


def test_the_parity_check_sees_the_attention_weights(peer_dir) -> None:
    """A conversion that lost q and k (uniform attention) must fail the parity check above by far."""
    peer, folder = peer_dir
    model = from_pretrained(folder)
    ids, mask = _ids()
    with torch.no_grad():
        for block in model.backbone.blocks:
            block.attn.qkv.weight[: 2 * 64].zero_()  # rows of q and k (the fused projection is [q; k; v])
            block.attn.qkv.bias[: 2 * 64].zero_()
    diff = (model(ids)[mask] - peer(input_ids=ids, attention_mask=mask.long()).logits[mask]).abs().max()
    assert diff > 1e-2


def test_original_google_names_and_the_nsp_head_are_read(peer_dir) -> None:
    """bert-base-uncased's file: LayerNorm gamma/beta, plus the pretraining heads (pooler, NSP) beside MLM."""
    peer, folder = peer_dir
    weights = folder / "model.safetensors"
    state = {k.replace("LayerNorm.weight", "LayerNorm.gamma").replace("LayerNorm.bias", "LayerNorm.beta"): v
             for k, v in load_file(str(weights)).items()}
    state.update({"cls.seq_relationship.weight": torch.zeros(2, 64), "bert.pooler.dense.weight": torch.zeros(64, 64)})
    save_file(state, str(weights))
    ids, mask = _ids()
    close(from_pretrained(folder)(ids)[mask], peer(input_ids=ids, attention_mask=mask.long()).logits[mask])


def test_export_round_trips_into_transformers(peer_dir, tmp_path: Path) -> None:
    from transformers import BertForMaskedLM

    peer, folder = peer_dir
    export(from_pretrained(folder), tmp_path / "back")
    again = BertForMaskedLM.from_pretrained(tmp_path / "back").eval()
    ids, mask = _ids()
    close(again(input_ids=ids, attention_mask=mask.long()).logits[mask],
          peer(input_ids=ids, attention_mask=mask.long()).logits[mask])


def test_wrong_bert_checkpoints_name_the_tensor_or_field(peer_dir) -> None:
    _, folder = peer_dir
    weights = folder / "model.safetensors"
    state = load_file(str(weights))
    save_file({k: v for k, v in state.items() if "layer.0.attention.self.key.bias" not in k}, str(weights))
    with pytest.raises(CheckpointError, match=r"no tensor 'bert\.encoder\.layer\.0\.attention\.self\.key\.bias'"):
        from_pretrained(folder)
    bad = dict(state)
    bad["bert.embeddings.word_embeddings.weight"] = torch.zeros(50, 64)
    save_file(bad, str(weights))
    with pytest.raises(CheckpointError, match=r"tokenizer\.embed\.weight: checkpoint \(50, 64\) vs model \(101, 64\)"):
        from_pretrained(folder)
    save_file(state, str(weights))
    cfg = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**cfg, "hidden_act": "mish"}))
    with pytest.raises(CheckpointError, match="hidden_act='mish' is not supported"):
        from_pretrained(folder)

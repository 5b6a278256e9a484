"""GPT-2 parity: a small random GPT2LMHeadModel saved with save_pretrained, converted to a CausalLM:
same logits with padding, KV-cached step-by-step logits = full recompute = peer, identical greedy
generation, and export back into transformers."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from mmformer.decoding import GenerationConfig, generate
from mmformer.pretrained import CheckpointError, from_pretrained, special_ids
from mmformer.pretrained.gpt2 import export
from tests.pretrained.conftest import close

LENGTHS = (10, 7, 4)
EOT, PAD = 96, 0  # GPT-2's <|endoftext|> is bos, eos (and pad) at once, the last id; PAD only fills test batches


@pytest.fixture()
def peer_dir(tmp_path: Path):
    from transformers import GPT2Config, GPT2LMHeadModel

    cfg = GPT2Config(vocab_size=97, n_positions=40, n_embd=64, n_layer=2, n_head=4, bos_token_id=EOT,
                     eos_token_id=EOT, initializer_range=0.2)
    peer = GPT2LMHeadModel(cfg).eval()
    peer.save_pretrained(tmp_path / "gpt2")
    return peer, tmp_path / "gpt2"


def _ids() -> tuple[torch.Tensor, torch.Tensor]:
    ids = torch.randint(1, EOT, (len(LENGTHS), max(LENGTHS)))
    mask = torch.arange(max(LENGTHS))[None] < torch.tensor(LENGTHS)[:, None]
    return ids.masked_fill(~mask, PAD), mask


def test_logits_with_padding_and_kv_cache_match(peer_dir) -> None:
    peer, folder = peer_dir
    model = from_pretrained(folder)
    ids, mask = _ids()
    theirs = peer(input_ids=ids, attention_mask=mask.long()).logits
    full = model(ids)
    close(full[mask], theirs[mask])  # right padding: real positions never see a pad
    cache = model.new_cache(4)
    steps = torch.cat([model(ids[:, t:t + 1], cache=cache) for t in range(ids.shape[1])], 1)
    close(steps, full)


def test_greedy_generation_matches_token_for_token(peer_dir) -> None:
    peer, folder = peer_dir
    model = from_pretrained(folder)
    n, ids = 15, special_ids(folder)
    assert ids == {"bos_id": EOT, "eos_id": EOT, "pad_id": EOT}
    bos = torch.full((4, 1), EOT)
    mine = generate(model, 4, GenerationConfig(strategy="greedy", max_new_tokens=n, **ids))
    nocache = generate(model, 4, GenerationConfig(strategy="greedy", max_new_tokens=n, use_cache=False, **ids))
    theirs = peer.generate(bos, attention_mask=torch.ones_like(bos), do_sample=False, max_new_tokens=n,
                           min_new_tokens=0, eos_token_id=EOT, pad_token_id=EOT)[:, 1:]
    assert torch.equal(mine, nocache)
    width = max(mine.shape[1], theirs.shape[1])
    pad = lambda t: torch.nn.functional.pad(t, (0, width - t.shape[1]), value=EOT)  # noqa: E731
    assert torch.equal(pad(mine), pad(theirs))
    assert len(set(mine.flatten().tolist())) > 2  # the random model does not just repeat one token


def test_export_round_trips_into_transformers(peer_dir, tmp_path: Path) -> None:
    from transformers import GPT2LMHeadModel

    peer, folder = peer_dir
    export(from_pretrained(folder), tmp_path / "back")
    again = GPT2LMHeadModel.from_pretrained(tmp_path / "back").eval()
    ids, mask = _ids()
    close(again(input_ids=ids).logits, peer(input_ids=ids).logits)
    assert from_pretrained(tmp_path / "back") is not None  # and mmformer reads its own export


def test_wrong_gpt2_checkpoints_name_the_tensor_or_field(peer_dir) -> None:
    _, folder = peer_dir
    weights = folder / "model.safetensors"
    state = load_file(str(weights))
    save_file({k: v for k, v in state.items() if not k.endswith("h.1.mlp.c_fc.weight")}, str(weights))
    with pytest.raises(CheckpointError, match=r"no tensor 'transformer\.h\.1\.mlp\.c_fc\.weight'"):
        from_pretrained(folder)
    save_file({**state, "transformer.h.0.attn.extra.weight": torch.zeros(1)}, str(weights))
    with pytest.raises(CheckpointError, match=r"does not know: \['transformer\.h\.0\.attn\.extra\.weight'\]"):
        from_pretrained(folder)
    save_file(state, str(weights))
    cfg = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**cfg, "n_layer": 3}))
    with pytest.raises(CheckpointError, match=r"no tensor 'transformer\.h\.2\.attn\.c_attn\.weight'"):
        from_pretrained(folder)

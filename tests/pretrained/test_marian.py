"""Marian parity: a small random MarianMTModel saved with save_pretrained, converted to a Seq2Seq: the
same logits with padded sources and targets, KV-cached decoding = full recompute = peer, identical
greedy translations, and export back into transformers."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from mmformer.decoding import GenerationConfig, generate
from mmformer.pretrained import CheckpointError, from_pretrained, special_ids
from mmformer.pretrained.marian import export
from tests.pretrained.conftest import close

SRC_LENGTHS, TGT_LENGTHS = (9, 6, 3), (7, 4, 5)
EOS_ID, PAD_ID = 0, 88  # as Opus-MT: eos 0, pad the last id and also the decoder's start
BOS_ID = PAD_ID


@pytest.fixture()
def peer_dir(tmp_path: Path):
    from transformers import MarianConfig, MarianMTModel

    cfg = MarianConfig(vocab_size=89, d_model=64, encoder_layers=2, decoder_layers=2, encoder_attention_heads=4,
                       decoder_attention_heads=4, encoder_ffn_dim=128, decoder_ffn_dim=128,
                       max_position_embeddings=40, scale_embedding=True, activation_function="swish", pad_token_id=PAD_ID, eos_token_id=EOS_ID,
                       decoder_start_token_id=BOS_ID, forced_eos_token_id=None, init_std=0.2)
    peer = MarianMTModel(cfg).eval()
    with torch.no_grad():
        peer.final_logits_bias.normal_(std=0.1)  # zero in a fresh model: make it count
        # Small embeddings under large layers: else each step's own (tied) embedding dominates its
        # logits and greedy decoding repeats one token, a weak test of the cache.
        peer.model.shared.weight.normal_(std=0.5)
    peer.save_pretrained(tmp_path / "marian")
    return peer, tmp_path / "marian"


def _padded(lengths: tuple[int, ...], first: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    ids = torch.randint(1, PAD_ID, (len(lengths), max(lengths)))
    if first is not None:
        ids[:, 0] = first
    mask = torch.arange(max(lengths))[None] < torch.tensor(lengths)[:, None]
    return ids.masked_fill(~mask, PAD_ID), mask


def test_logits_with_padding_and_kv_cache_match(peer_dir) -> None:
    peer, folder = peer_dir
    model = from_pretrained(folder)
    src, src_mask = _padded(SRC_LENGTHS)
    tgt, tgt_mask = _padded(TGT_LENGTHS, first=BOS_ID)
    theirs = peer(input_ids=src, attention_mask=src_mask.long(), decoder_input_ids=tgt,
                  decoder_attention_mask=tgt_mask.long()).logits
    full = model(src, tgt)
    close(full[tgt_mask], theirs[tgt_mask])
    memory, cache = model.encode(src), model.new_cache(4)
    steps = torch.cat([model.decode(tgt[:, t:t + 1], memory, cache).logits for t in range(tgt.shape[1])], 1)
    close(steps, full)


def test_greedy_translation_matches_token_for_token(peer_dir) -> None:
    peer, folder = peer_dir
    model = from_pretrained(folder)
    src, src_mask = _padded(SRC_LENGTHS)
    n = 12
    ids = special_ids(folder)
    assert ids == {"bos_id": PAD_ID, "eos_id": EOS_ID, "pad_id": PAD_ID}
    mine = generate(model, src, GenerationConfig(strategy="greedy", max_new_tokens=n, **ids))
    theirs = peer.generate(src, attention_mask=src_mask.long(), do_sample=False, num_beams=1, max_new_tokens=n,
                           suppress_tokens=[PAD_ID], bad_words_ids=None, forced_eos_token_id=None,
                           eos_token_id=EOS_ID, pad_token_id=PAD_ID, decoder_start_token_id=BOS_ID)[:, 1:]
    width = max(mine.shape[1], theirs.shape[1])
    pad = lambda t: torch.nn.functional.pad(t, (0, width - t.shape[1]), value=PAD_ID)  # noqa: E731
    assert torch.equal(pad(mine), pad(theirs))
    assert len(set(mine.flatten().tolist())) > 2  # the random model does not just repeat one token


def test_export_round_trips_into_transformers(peer_dir, tmp_path: Path) -> None:
    from transformers import MarianMTModel

    peer, folder = peer_dir
    export(from_pretrained(folder), tmp_path / "back", decoder_start_token_id=BOS_ID)
    again = MarianMTModel.from_pretrained(tmp_path / "back").eval()
    src, src_mask = _padded(SRC_LENGTHS)
    tgt, _ = _padded(TGT_LENGTHS, first=BOS_ID)
    kw = dict(input_ids=src, attention_mask=src_mask.long(), decoder_input_ids=tgt)
    close(again(**kw).logits, peer(**kw).logits)


def test_wrong_marian_checkpoints_name_the_tensor_or_field(peer_dir) -> None:
    _, folder = peer_dir
    weights = folder / "model.safetensors"
    state = load_file(str(weights))
    save_file({k: v for k, v in state.items() if "decoder.layers.1.encoder_attn.v_proj.weight" not in k},
              str(weights))
    with pytest.raises(CheckpointError, match=r"no tensor 'model\.decoder\.layers\.1\.encoder_attn\.v_proj\.weight'"):
        from_pretrained(folder)
    save_file(state, str(weights))
    cfg = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**cfg, "share_encoder_decoder_embeddings": False}))
    with pytest.raises(CheckpointError, match="share_encoder_decoder_embeddings=False is not supported"):
        from_pretrained(folder)

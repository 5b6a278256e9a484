"""Whisper parity: a small random WhisperForConditionalGeneration saved with save_pretrained, converted
to a Seq2Seq with the WhisperAudioTokenizer front end: the same log-mel features as WhisperFeatureExtractor
for utterances of different lengths, the same logits with padded targets, KV-cached decoding = full
recompute = peer, identical greedy transcripts, and export back into transformers."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from mmformer.decoding import GenerationConfig, generate
from mmformer.pretrained import CheckpointError, from_pretrained, special_ids
from mmformer.pretrained.whisper import export
from mmformer.tokenizers.audio import AudioBatch
from tests.pretrained.conftest import close

N_MELS, SECONDS, TGT_LENGTHS = 16, 1, (6, 3)
EOS_ID = PAD_ID = 89  # as Whisper: <|endoftext|> ends and pads
BOS_ID = 90  # <|startoftranscript|>


@pytest.fixture()
def peer_dir(tmp_path: Path):
    from transformers import WhisperConfig, WhisperForConditionalGeneration

    cfg = WhisperConfig(vocab_size=91, num_mel_bins=N_MELS, d_model=64, encoder_layers=2, decoder_layers=2,
                        encoder_attention_heads=4, decoder_attention_heads=4, encoder_ffn_dim=128,
                        decoder_ffn_dim=128, max_source_positions=50 * SECONDS, max_target_positions=32,
                        pad_token_id=PAD_ID, bos_token_id=BOS_ID, eos_token_id=EOS_ID, decoder_start_token_id=BOS_ID,
                        init_std=0.2)
    peer = WhisperForConditionalGeneration(cfg).eval()
    peer.save_pretrained(tmp_path / "whisper")
    return peer, tmp_path / "whisper"


def _audio() -> AudioBatch:
    lengths = torch.tensor([16000 * SECONDS - 1000, 5000])
    t = torch.arange(int(lengths.max())) / 16000
    wave = torch.stack([0.5 * torch.sin(2 * torch.pi * f * t) for f in (440.0, 1250.0)]) + 0.05 * torch.randn(2, len(t))
    return AudioBatch(wave * (torch.arange(len(t))[None] < lengths[:, None]), lengths)


def _features(audio: AudioBatch) -> torch.Tensor:
    from transformers import WhisperFeatureExtractor

    fe = WhisperFeatureExtractor(feature_size=N_MELS, sampling_rate=16000, hop_length=160, chunk_length=SECONDS,
                                 n_fft=400)
    waves = [w[:n].numpy() for w, n in zip(audio.waveforms, audio.lengths.tolist())]
    return fe(waves, sampling_rate=16000, return_tensors="pt").input_features


def test_log_mel_front_end_matches_the_feature_extractor(peer_dir) -> None:
    _, folder = peer_dir
    model = from_pretrained(folder)
    audio = _audio()
    close(model.source_tokenizer.log_mel(audio), _features(audio))


def test_logits_with_padding_and_kv_cache_match(peer_dir) -> None:
    peer, folder = peer_dir
    model = from_pretrained(folder)
    feats = _features(_audio())
    tgt = torch.randint(0, EOS_ID, (2, max(TGT_LENGTHS)))
    tgt[:, 0] = BOS_ID
    mask = torch.arange(tgt.shape[1])[None] < torch.tensor(TGT_LENGTHS)[:, None]
    tgt = tgt.masked_fill(~mask, PAD_ID)
    out = peer(input_features=feats, decoder_input_ids=tgt, decoder_attention_mask=mask.long())
    memory = model.encode(feats)
    close(memory.hidden, out.encoder_last_hidden_state)
    full = model.decode(tgt, memory).logits
    close(full[mask], out.logits[mask])
    cache = model.new_cache(4)
    steps = torch.cat([model.decode(tgt[:, t:t + 1], memory, cache).logits for t in range(tgt.shape[1])], 1)
    close(steps, full)


def test_greedy_transcripts_match_token_for_token(peer_dir) -> None:
    from transformers import GenerationMixin

    peer, folder = peer_dir
    model = from_pretrained(folder)
    feats, n = _features(_audio()), 12
    ids = special_ids(folder)
    assert ids == {"bos_id": BOS_ID, "eos_id": EOS_ID, "pad_id": PAD_ID}
    mine = generate(model, feats, GenerationConfig(strategy="greedy", max_new_tokens=n, **ids))
    start = torch.full((2, 1), BOS_ID)
    # Whisper's own generate adds language/timestamp logic; the plain greedy loop is the reference.
    theirs = GenerationMixin.generate(peer, input_features=feats, decoder_input_ids=start, do_sample=False,
                                      num_beams=1, max_new_tokens=n, suppress_tokens=[BOS_ID],
                                      begin_suppress_tokens=None, forced_decoder_ids=None, eos_token_id=EOS_ID,
                                      pad_token_id=PAD_ID)[:, 1:]
    width = max(mine.shape[1], theirs.shape[1])
    pad = lambda t: torch.nn.functional.pad(t, (0, width - t.shape[1]), value=PAD_ID)  # noqa: E731
    assert torch.equal(pad(mine), pad(theirs))
    assert len(set(mine.flatten().tolist())) > 2  # the random model does not just repeat one token


def test_export_round_trips_into_transformers(peer_dir, tmp_path: Path) -> None:
    from transformers import WhisperForConditionalGeneration

    peer, folder = peer_dir
    export(from_pretrained(folder), tmp_path / "back", decoder_start_token_id=BOS_ID, eos_token_id=EOS_ID)
    again = WhisperForConditionalGeneration.from_pretrained(tmp_path / "back").eval()
    feats, tgt = _features(_audio()), torch.randint(4, 91, (2, 5))
    close(again(input_features=feats, decoder_input_ids=tgt).logits,
          peer(input_features=feats, decoder_input_ids=tgt).logits)


def test_wrong_whisper_checkpoints_name_the_tensor(peer_dir) -> None:
    _, folder = peer_dir
    weights = folder / "model.safetensors"
    state = load_file(str(weights))
    save_file({k: v for k, v in state.items() if k != "model.encoder.conv2.weight"}, str(weights))
    with pytest.raises(CheckpointError, match=r"no tensor 'model\.encoder\.conv2\.weight'"):
        from_pretrained(folder)


def test_the_front_end_meets_the_tokenizer_contract() -> None:
    from mmformer.testing import check_tokenizer
    from mmformer.tokenizers.whisper_audio import WhisperAudioTokenizer

    tok = WhisperAudioTokenizer(32, n_mels=N_MELS, chunk_seconds=SECONDS, max_positions=50 * SECONDS)
    check_tokenizer(tok, tok.dummy_inputs())  # padding-invariant, differentiable, movable
    with pytest.raises(ValueError, match=r"expected log-mel features \(B, 16, T\)"):
        tok(torch.zeros(1, 80, 100))

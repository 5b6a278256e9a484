"""Decoding: cache = recompute, beam 1 = greedy, beam scores = full-forward log-probs, filters, seeds."""

from __future__ import annotations

import itertools

import pytest
import torch

from mmformer.backbone import BackboneConfig, Decoder, Encoder
from mmformer.generation import (
    GenerationConfig,
    beam_search,
    generate,
    length_penalty,
    sequence_log_probs,
    strip,
    top_k_filter,
    top_p_filter,
)
from mmformer.models.seq2seq import Seq2Seq
from mmformer.tokenizers.sentencepiece_vocab import BOS_ID, EOS_ID, PAD_ID
from mmformer.tokenizers.text import TextTokenizer

V = 40


def _model(seed: int = 0, positions: str = "learned", rope: bool = False) -> Seq2Seq:
    torch.manual_seed(seed)
    enc = BackboneConfig(dim=32, depth=2, num_heads=4, mlp_ratio=2.0)
    dec = BackboneConfig(dim=32, depth=2, num_heads=4, mlp_ratio=2.0, rope=rope)
    model = Seq2Seq(TextTokenizer(32, V), Encoder(enc), TextTokenizer(32, V, max_len=64, positions=positions),
                    Decoder(dec)).eval()
    with torch.no_grad():  # sharper, varied distributions than the 0.02 init, so decoding choices matter
        for p in model.parameters():
            if p.dim() >= 2:
                p.normal_(0, 0.3)
    return model


def _source(b: int = 3) -> torch.Tensor:
    g = torch.Generator().manual_seed(1)
    src = torch.randint(4, V, (b, 7), generator=g)
    src[1, 4:] = PAD_ID  # a padded row
    return src


@pytest.mark.parametrize("strategy", ["greedy", "sample", "beam"])
@pytest.mark.parametrize("positions,rope", [("learned", False), ("none", True), ("sinusoidal", False)])
def test_kv_cache_decoding_is_token_identical_to_recompute(strategy: str, positions: str, rope: bool) -> None:
    model, src = _model(positions=positions, rope=rope), _source()
    cfg = GenerationConfig(strategy=strategy, max_new_tokens=20, beam_size=3, top_k=10, top_p=0.9, seed=3)
    cached = generate(model, src, cfg)
    recomputed = generate(model, src, GenerationConfig(**{**cfg.__dict__, "use_cache": False}))
    assert cached.shape[1] > 1
    assert torch.equal(cached, recomputed)


def test_beam_of_one_is_greedy() -> None:
    model, src = _model(), _source()
    greedy = generate(model, src, GenerationConfig(strategy="greedy", max_new_tokens=24))
    beam = beam_search(model, src, GenerationConfig(strategy="beam", beam_size=1, max_new_tokens=24))
    assert torch.equal(beam.sequences[:, 0, : greedy.shape[1]], greedy[:, : beam.sequences.shape[2]])


@pytest.mark.parametrize("alpha", [0.0, 0.6, 1.0])
def test_beam_hypotheses_are_sorted_and_scores_are_the_full_forward_log_probs(alpha: float) -> None:
    model, src = _model(seed=2), _source()
    out = beam_search(model, src, GenerationConfig(strategy="beam", beam_size=4, max_new_tokens=16,
                                                   length_penalty=alpha))
    b, k, _ = out.sequences.shape
    flat = out.sequences.reshape(b * k, -1)
    recomputed = sequence_log_probs(model, src.repeat_interleave(k, 0), flat).view(b, k)
    assert torch.allclose(out.scores, recomputed, atol=1e-4), (out.scores, recomputed)
    # lengths count the generated tokens up to and including eos (all of them if none)
    lengths = []
    for row, n in zip(flat.tolist(), out.lengths.flatten().tolist()):
        lengths.append(row.index(EOS_ID) + 1 if EOS_ID in row else len(row))
        assert n == lengths[-1]
        assert all(t == PAD_ID for t in row[n:])
    # hypotheses come best first by the recomputed, length-normalized score
    normalized = recomputed / length_penalty(torch.tensor(lengths).view(b, k), alpha)
    assert (normalized[:, :-1] >= normalized[:, 1:] - 1e-4).all()
    # hypotheses of one source are distinct
    for i in range(b):
        assert len({tuple(s) for s in out.sequences[i].tolist()}) == k


def test_beam_search_with_a_wide_enough_beam_is_exact_search() -> None:
    # A vocabulary of 6 (4 specials, 2 words) leaves 4 generable ids (unk, eos, 2 words), so 3 steps
    # have 40 distinct outputs; a beam of 16 >= 4**2 never drops a prefix, so its best hypothesis must
    # be the argmax of the full-forward log-probability over all of them, finished ones included.
    # (A beam can score below greedy when greedy's prefix falls off it, so that is no property to test.)
    v, steps = 6, 3
    torch.manual_seed(5)
    dec = BackboneConfig(dim=16, depth=1, num_heads=2, mlp_ratio=2.0)
    model = Seq2Seq(TextTokenizer(16, V), Encoder(dec), TextTokenizer(16, v, max_len=8), Decoder(dec)).eval()
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() >= 2:
                p.normal_(0, 0.5)
    src = _source(4)
    out = beam_search(model, src, GenerationConfig(strategy="beam", beam_size=16, max_new_tokens=steps,
                                                   length_penalty=0.0))
    words = [t for t in range(v) if t not in (PAD_ID, BOS_ID)]
    candidates = []
    for seq in itertools.product(words, repeat=steps):
        end = seq.index(EOS_ID) + 1 if EOS_ID in seq else steps
        candidates.append(tuple(seq[:end]) + (PAD_ID,) * (steps - end))
    candidates = sorted(set(candidates))
    assert len(candidates) == 1 + 3 + 9 + 27
    table = torch.tensor(candidates)  # (40, steps)
    for i in range(src.shape[0]):
        exact = sequence_log_probs(model, src[i : i + 1].expand(len(table), -1), table)  # (40,)
        best = int(exact.argmax())
        assert out.sequences[i, 0].tolist() == list(candidates[best])
        assert torch.allclose(out.scores[i, 0], exact[best], atol=1e-4)
    finished = (out.sequences[:, 0] == EOS_ID).any(1)
    assert finished.any(), "no best hypothesis ends in eos: the test would not cover finished rows"


def test_sampling_is_seeded_and_filters_are_pure() -> None:
    model, src = _model(), _source()
    cfg = GenerationConfig(strategy="sample", max_new_tokens=12, temperature=1.5, seed=7)
    assert torch.equal(generate(model, src, cfg), generate(model, src, cfg))
    other = generate(model, src, GenerationConfig(**{**cfg.__dict__, "seed": 8}))
    assert not torch.equal(generate(model, src, cfg), other)

    logits = torch.tensor([[2.0, 1.0, 0.5, -1.0], [0.1, 3.0, -0.2, 0.0]])
    before = logits.clone()
    k2 = top_k_filter(logits, 2)
    assert torch.equal(logits, before)
    assert torch.isinf(k2).sum(1).tolist() == [2, 2] and k2[0, 0] == 2.0 and k2[1, 1] == 3.0
    probs = logits.softmax(-1)
    kept = torch.isfinite(top_p_filter(logits, 0.7))
    assert kept[0].tolist() == [True, True, False, False]  # 0.61 < 0.7, then 0.61 + 0.22 >= 0.7
    assert kept[1].tolist() == [False, True, False, False] and probs[1, 1] > 0.7
    assert torch.isfinite(top_p_filter(logits, 1e-9)).sum(1).tolist() == [1, 1]  # always one token
    assert torch.equal(top_p_filter(logits, 1.0), logits) and torch.equal(top_k_filter(logits, 0), logits)


def test_generation_stops_and_pads_after_eos_and_guards_the_length() -> None:
    model, src = _model(), _source()
    out = generate(model, src, GenerationConfig(strategy="greedy", max_new_tokens=40))
    for row in out.tolist():
        if EOS_ID in row:
            assert all(t == PAD_ID for t in row[row.index(EOS_ID) + 1:])
    assert all(BOS_ID not in r and PAD_ID not in r for r in strip(out))  # never generated
    with pytest.raises(ValueError, match="exceeds the decoder's 64-position table"):
        generate(model, src, GenerationConfig(strategy="greedy", max_new_tokens=64))
    with pytest.raises(ValueError, match="strategy"):
        generate(model, src, GenerationConfig(strategy="nucleus", max_new_tokens=4))  # type: ignore[arg-type]

"""Decoding: cache = recompute, beam 1 = greedy, beam scores = full-forward log-probs, filters, seeds;
anti-repetition options (relative length limit, n-gram blocking, repetition penalty)."""

from __future__ import annotations

import itertools

import pytest
import torch

from mmformer.backbone import BackboneConfig, BackboneOutput, Decoder, Encoder
from mmformer.decoding import (
    GenerationConfig,
    beam_search,
    generate,
    length_penalty,
    repeated_ngram_bans,
    repetition_penalty,
    strip,
    top_k_filter,
    top_p_filter,
    validation_greedy,
)
from mmformer.models.seq2seq import Seq2Seq
from mmformer.tokenizers.sentencepiece_vocab import BOS_ID, EOS_ID, PAD_ID
from mmformer.tokenizers.text import TextTokenizer

V = 40


def sequence_log_probs(model: Seq2Seq, source: torch.Tensor, sequences: torch.Tensor) -> torch.Tensor:
    """Sum of token log-probs of ``sequences (B, T)`` (ids after bos; pads after eos ignored),
    by one full teacher-forced forward pass: the reference that beam scores must equal."""
    memory = model.encode(source)
    bos = torch.full_like(sequences[:, :1], BOS_ID)
    logits = model.decode(torch.cat([bos, sequences[:, :-1]], 1), memory)[0].float()
    logp = logits.log_softmax(-1).gather(-1, sequences[..., None])[..., 0]  # (B, T)
    ended = (sequences == EOS_ID).long().cumsum(1) - (sequences == EOS_ID).long()  # 1 after the first eos
    return (logp * ((ended == 0) & (sequences != PAD_ID))).sum(1)


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


# ---- anti-repetition: relative length limit, n-gram blocking, repetition penalty --------------------------

class _NoCache:
    length = 0

    def copy_rows(self, src: torch.Tensor, dst: torch.Tensor) -> None:
        pass


class _Looper:
    """A toy decoder forced to repeat: it strongly prefers the cycle 5 6 7 5 6 7 ... (then a fixed
    ranking of the other words, depending on the last token) and never prefers eos."""

    max_target_len = 1 << 30
    vocab = 16

    def encode(self, source: torch.Tensor) -> BackboneOutput:
        return BackboneOutput(torch.zeros(*source.shape, 4), source != PAD_ID)

    def new_cache(self, capacity: int) -> _NoCache:
        return _NoCache()

    def decode(self, ids: torch.Tensor, memory: BackboneOutput, cache: object = None, last_only: bool = False):
        last = ids[:, -1]  # (R,) the output depends on the last token only, so cache = no cache
        ranks = (torch.arange(self.vocab)[None, :] * 7 + last[:, None] * 3) % self.vocab  # (R, V) a varied order
        logits = ranks.float() / self.vocab
        preferred = torch.where((last >= 5) & (last <= 7), (last - 5 + 1) % 3 + 5, torch.full_like(last, 5))
        logits[torch.arange(len(last)), preferred] += 10.0
        logits[:, EOS_ID] = -5.0
        return logits[:, None], None


def _ngrams(row: list[int], n: int) -> list[tuple[int, ...]]:
    return [tuple(row[i: i + n]) for i in range(len(row) - n + 1)]


@pytest.mark.parametrize("strategy", ["greedy", "sample", "beam"])
@pytest.mark.parametrize("n", [2, 3])
def test_a_model_forced_to_repeat_gets_its_repeated_ngrams_banned(strategy: str, n: int) -> None:
    model, src = _Looper(), _source()
    cfg = GenerationConfig(strategy=strategy, max_new_tokens=24, beam_size=3, seed=1)
    looping = strip(generate(model, src, cfg))
    assert all(len(set(_ngrams(r, n))) < len(_ngrams(r, n)) for r in looping), "the toy model does loop"
    blocked = strip(generate(model, src, GenerationConfig(**{**cfg.__dict__, "no_repeat_ngram_size": n})))
    for row in blocked:
        assert len(row) == 24 and len(set(_ngrams(row, n))) == len(_ngrams(row, n)), row
    penalized = strip(generate(model, src, GenerationConfig(**{**cfg.__dict__, "repetition_penalty": 1e3})))
    if strategy != "sample":  # (sampling still draws a seen token now and then: its logit is ~0, not -inf)
        assert all(len(set(r[:8])) == 8 for r in penalized), "a strong penalty avoids any seen token while it can"
    assert penalized != looping


@pytest.mark.parametrize("strategy", ["greedy", "sample", "beam"])
def test_relative_length_limit_stops_each_row_at_its_own_limit(strategy: str) -> None:
    model = _Looper()
    src = torch.full((3, 9), 5)
    src[1, 4:] = PAD_ID
    src[2, 2:] = PAD_ID  # real lengths 9, 4, 2 (from the memory mask)
    for a, b, cap, expected in ((1.5, 2, 40, [15, 8, 5]), (0.0, 6, 40, [6, 6, 6]), (3.0, 1, 10, [10, 10, 7])):
        cfg = GenerationConfig(strategy=strategy, max_new_tokens=cap, beam_size=2, max_len_a=a, max_len_b=b)
        out = generate(model, src, cfg)
        assert out.shape[1] == max(expected)
        lengths = [row.index(EOS_ID) + 1 if EOS_ID in row else len(row) for row in out.tolist()]
        if (a, b) == (3.0, 1):  # rows 0 and 1 hit max_new_tokens first: cut there without eos, as with no limit
            assert [EOS_ID in r for r in out.tolist()] == [False, False, True]
        assert lengths == expected, (a, b, lengths)
    # off by default: the loop runs to max_new_tokens
    assert generate(model, src, GenerationConfig(strategy=strategy, max_new_tokens=12, beam_size=2)).shape[1] == 12


@pytest.mark.parametrize("strategy", ["greedy", "sample", "beam"])
def test_kv_cache_equals_recompute_with_the_anti_repetition_options_on(strategy: str) -> None:
    model, src = _model(seed=4), _source()
    cfg = GenerationConfig(strategy=strategy, max_new_tokens=30, beam_size=3, top_k=10, seed=3,
                           no_repeat_ngram_size=2, repetition_penalty=1.3, max_len_a=2.0, max_len_b=3)
    cached = generate(model, src, cfg)
    assert torch.equal(cached, generate(model, src, GenerationConfig(**{**cfg.__dict__, "use_cache": False})))
    for row in strip(cached):
        assert len(set(_ngrams(row, 2))) == len(_ngrams(row, 2))
    assert cached.shape[1] == 2 * 7 + 3  # the longest source has 7 real tokens


def test_repetition_penalty_follows_the_ctrl_definition() -> None:
    logits = torch.tensor([[2.0, -1.0, 0.5, -3.0, 1.0], [0.0, 4.0, -2.0, 1.0, -0.5]])
    generated = torch.tensor([[0, 1, 1], [2, 4, 2]])
    out = repetition_penalty(logits, generated, 2.0)
    assert out.tolist() == [[1.0, -2.0, 0.5, -3.0, 1.0], [0.0, 4.0, -4.0, 1.0, -1.0]]
    assert torch.equal(repetition_penalty(logits, generated, 1.0), logits)
    assert torch.equal(logits[0], torch.tensor([2.0, -1.0, 0.5, -3.0, 1.0]))  # pure
    bans = repeated_ngram_bans(torch.tensor([[5, 6, 7, 5], [5, 6, 5, 6], [4, 4, 4, 4]]), 2, 9)
    assert [torch.nonzero(r).flatten().tolist() for r in bans] == [[6], [5], [4]]
    assert repeated_ngram_bans(torch.tensor([[5, 6, 5, 6]]), 3, 9)[0].nonzero().flatten().tolist() == [5]


def test_penalty_and_ngram_bans_equal_hugging_faces_processors() -> None:
    hf = pytest.importorskip("transformers")
    g = torch.Generator().manual_seed(0)
    ids, scores = torch.randint(0, 6, (8, 12), generator=g), torch.randn(8, 6, generator=g) * 3
    for penalty in (0.7, 1.5):
        ref = hf.RepetitionPenaltyLogitsProcessor(penalty)(ids, scores.clone())
        torch.testing.assert_close(repetition_penalty(scores, ids, penalty), ref)
    for n in (1, 2, 3):
        ref = torch.isinf(hf.NoRepeatNGramLogitsProcessor(n)(ids, scores.clone()))
        assert torch.equal(repeated_ngram_bans(ids, n, 6), ref), n


def test_validation_greedy_keeps_the_test_decodings_limits_and_ids() -> None:
    """Validation's greedy decoding stops where the test's would: same length limits, anti-repetition options
    and special ids (a converted checkpoint's own), only the search is greedy."""
    cfg = GenerationConfig(strategy="beam", beam_size=5, max_new_tokens=7, max_len_a=1.2, max_len_b=3,
                           no_repeat_ngram_size=2, repetition_penalty=1.3, ctc_weight=0.3, bos_id=9, eos_id=8, pad_id=7)
    assert validation_greedy(cfg) == GenerationConfig(strategy="greedy", max_new_tokens=7, max_len_a=1.2, max_len_b=3,
                                                      no_repeat_ngram_size=2, repetition_penalty=1.3, bos_id=9,
                                                      eos_id=8, pad_id=7)

"""Hybrid CTC/attention decoding: prefix scores sum to the CTC log-likelihood of the label sequence
(``-F.ctc_loss``); beam search with ctc_weight 1 finds the most probable labelling (brute force); the hybrid
path runs on a real model with a CTC head and refuses what it cannot do."""

from __future__ import annotations

import itertools

import pytest
import torch
import torch.nn.functional as F

from mmformer.backbone import BackboneConfig, BackboneOutput, Decoder, Encoder
from mmformer.decoding.ctc_prefix import CTCPrefixScorer
from mmformer.decoding import GenerationConfig, beam_search, generate
from mmformer.models.seq2seq import Seq2Seq
from mmformer.tokenizers.sentencepiece_vocab import EOS_ID, PAD_ID
from mmformer.tokenizers.text import TextTokenizer

LABELS = [1, 4, 5]  # not pad (= blank), bos or eos
V = 6


def _ctc_log_likelihood(lp: torch.Tensor, length: int, labels: list[int]) -> float:
    """log p_ctc(labels | frames) of one row ``lp (T, V)``, by PyTorch's CTC loss."""
    target = torch.tensor([labels or [0]])
    loss = F.ctc_loss(lp[:length, None], target, torch.tensor([length]), torch.tensor([len(labels)]),
                      blank=PAD_ID, reduction="none", zero_infinity=False)
    return -float(loss[0])


@pytest.mark.parametrize("labels,length", [([4, 5, 1], 9), ([4, 4, 5], 9), ([5], 6), ([], 4), ([1, 1, 1], 9)])
def test_prefix_scores_sum_to_the_ctc_log_likelihood(labels: list[int], length: int) -> None:
    g = torch.Generator().manual_seed(len(labels) + length)
    lp = (torch.randn(1, 9, V, generator=g) * 2).log_softmax(-1)  # frames past `length` are padding
    scorer = CTCPrefixScorer(lp, torch.tensor([length]), blank=PAD_ID, eos=EOS_ID)
    cand = torch.tensor([[*LABELS, EOS_ID]])  # every label and eos, each step
    total = 0.0
    for label in [*labels, EOS_ID]:
        delta = scorer.score(cand)
        total += float(delta[0, cand[0].tolist().index(label)])
        scorer.advance(torch.tensor([0]), torch.tensor([label]))
    assert total == pytest.approx(_ctc_log_likelihood(lp[0], length, labels), abs=1e-4)


def _prefix_log_probs(lp: torch.Tensor, length: int) -> dict[object, float]:
    """Brute force over every alignment of ``lp[:length]``: log P(the labelling starts with g) for every prefix
    g, and log P(the labelling is g) under the key ``(g, "end")``."""
    paths = torch.tensor(list(itertools.product(range(V), repeat=length)))  # (V^T, T)
    path_lp = lp[torch.arange(length), paths].sum(1)  # (V^T,)
    totals: dict[object, list[torch.Tensor]] = {}
    for path, score in zip(paths.tolist(), path_lp):
        labels = [c for i, c in enumerate(path) if c != PAD_ID and (i == 0 or c != path[i - 1])]
        for n in range(len(labels) + 1):
            totals.setdefault(tuple(labels[:n]), []).append(score)
        totals.setdefault((tuple(labels), "end"), []).append(score)
    return {g: float(torch.stack(v).logsumexp(0)) for g, v in totals.items()}


@pytest.mark.parametrize("labels,length", [([4, 5, 1], 5), ([4, 4], 5), ([1, 1, 1], 5)])
def test_every_intermediate_prefix_probability_matches_the_sum_over_its_alignments(labels: list[int],
                                                                                   length: int) -> None:
    """Not only the telescoped total: after each label, log psi(g + c) of every candidate c is the log-probability
    (brute force over every alignment) that the labelling starts with g + c, and eos gives P(labelling = g)."""
    g = torch.Generator().manual_seed(7 * length + len(labels))
    lp = (torch.randn(1, 7, V, generator=g) * 2).log_softmax(-1)  # frames past `length` are padding
    brute = _prefix_log_probs(lp[0], length)
    scorer = CTCPrefixScorer(lp, torch.tensor([length]), blank=PAD_ID, eos=EOS_ID)
    cand = [*LABELS, EOS_ID]
    prefix: tuple[int, ...] = ()
    total = 0.0  # log psi(prefix)
    for label in [*labels, EOS_ID]:
        delta = scorer.score(torch.tensor([cand]))[0]
        for c, d in zip(cand, delta.tolist()):
            want = brute.get((prefix, "end") if c == EOS_ID else (*prefix, c), float("-inf"))
            if want == float("-inf"):
                assert d == float("-inf"), (prefix, c)
            else:
                assert total + d == pytest.approx(want, abs=1e-4), (prefix, c)
        scorer.advance(torch.tensor([0]), torch.tensor([label]))
        total += delta[cand.index(label)].item()
        prefix = (*prefix, label)


def test_a_prefix_longer_than_the_frames_allow_is_impossible() -> None:
    lp = torch.randn(1, 2, V).log_softmax(-1)
    scorer = CTCPrefixScorer(lp, torch.tensor([2]), blank=PAD_ID, eos=EOS_ID)
    for label in (4, 5):
        scorer.score(torch.tensor([[label]]))
        scorer.advance(torch.tensor([0]), torch.tensor([label]))
    assert torch.isneginf(scorer.score(torch.tensor([[1]]))).all()  # a third label in two frames
    assert torch.isfinite(scorer.score(torch.tensor([[EOS_ID]]))).all()  # ending is still possible


class _UniformDecoder:
    """A decoder with no opinion (uniform logits) over fixed CTC frames: beam search with ctc_weight 1 is
    then a search for the most probable CTC labelling."""

    def __init__(self, ctc_log_probs: torch.Tensor) -> None:
        self.ctc = ctc_log_probs  # (B, T, V)
        self.ctc_head = object()
        self.max_target_len = 64

    def encode(self, source: torch.Tensor) -> BackboneOutput:
        return BackboneOutput(hidden=source, mask=None)

    def ctc_logits(self, memory: BackboneOutput) -> torch.Tensor:
        return memory.hidden

    def decode(self, ids: torch.Tensor, memory: BackboneOutput, cache: object, last_only: bool = False):
        return torch.zeros(ids.shape[0], ids.shape[1], V), None


@pytest.mark.parametrize("seed", range(4))
def test_ctc_weight_one_finds_the_most_probable_labelling(seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    lp = (torch.randn(1, 3, V, generator=g) * 2).log_softmax(-1)  # 3 frames: at most 3 labels
    best = max((list(y) for n in range(4) for y in itertools.product(LABELS, repeat=n)),
               key=lambda y: _ctc_log_likelihood(lp[0], 3, y))
    cfg = GenerationConfig(strategy="beam", beam_size=40, max_new_tokens=5, length_penalty=0.0, use_cache=False,
                           ctc_weight=1.0, ctc_pre_beam=V)
    out = beam_search(_UniformDecoder(lp), lp, cfg)
    seq = out.sequences[0, 0].tolist()
    assert seq[: seq.index(EOS_ID)] == best
    assert float(out.scores[0, 0]) == pytest.approx(_ctc_log_likelihood(lp[0], 3, best), abs=1e-4)


class _LoopingDecoder(_UniformDecoder):
    """A decoder that wants label 4 forever and almost never eos: the attention decoder running past the audio."""

    def decode(self, ids: torch.Tensor, memory: BackboneOutput, cache: object, last_only: bool = False):
        logits = torch.zeros(ids.shape[0], ids.shape[1], V)
        logits[..., 4], logits[..., EOS_ID] = 5.0, -5.0
        return logits, None


def test_ctc_ends_a_decoder_that_would_run_past_the_audio() -> None:
    lp = torch.full((1, 4, V), -20.0)
    lp[0, 0, 4] = lp[0, 1:, PAD_ID] = 0.0  # the audio holds one label 4, then silence
    lp = lp.log_softmax(-1)
    cfg = GenerationConfig(strategy="beam", beam_size=2, max_new_tokens=20, use_cache=False)
    plain = beam_search(_LoopingDecoder(lp), lp, cfg).sequences[0, 0].tolist()
    hybrid = beam_search(_LoopingDecoder(lp), lp, GenerationConfig(**{**cfg.__dict__, "ctc_weight": 0.3}))
    assert EOS_ID not in plain and len(plain) == 20  # the decoder alone loops to the length limit
    assert hybrid.sequences[0, 0].tolist()[:2] == [4, EOS_ID]


def _speech_like_model(ctc: bool = True) -> Seq2Seq:
    torch.manual_seed(0)
    cfg = BackboneConfig(dim=32, depth=1, num_heads=4, mlp_ratio=2.0)
    return Seq2Seq(TextTokenizer(32, 40), Encoder(cfg), TextTokenizer(32, 40, max_len=64), Decoder(cfg),
                   ctc_vocab_size=40 if ctc else 0).eval()


def test_hybrid_beam_search_runs_on_padded_sources_and_changes_nothing_at_weight_zero() -> None:
    model, src = _speech_like_model(), torch.randint(4, 40, (3, 9))
    src[1, 5:] = PAD_ID
    cfg = GenerationConfig(strategy="beam", beam_size=3, max_new_tokens=12)
    plain = beam_search(model, src, cfg)
    hybrid = beam_search(model, src, GenerationConfig(**{**cfg.__dict__, "ctc_weight": 0.5}))
    assert hybrid.sequences.shape[:2] == plain.sequences.shape[:2]
    assert torch.isfinite(hybrid.scores).all()
    assert torch.equal(beam_search(model, src, GenerationConfig(**{**cfg.__dict__, "ctc_weight": 0.0})).sequences,
                       plain.sequences)


def test_hybrid_decoding_refuses_models_without_ctc_and_non_beam_strategies() -> None:
    src = torch.randint(4, 40, (2, 5))
    with pytest.raises(ValueError, match="CTC head"):
        beam_search(_speech_like_model(ctc=False), src, GenerationConfig(max_new_tokens=8, ctc_weight=0.3))
    with pytest.raises(ValueError, match="strategy: beam"):
        generate(_speech_like_model(), src, GenerationConfig(strategy="greedy", max_new_tokens=8, ctc_weight=0.3))
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        beam_search(_speech_like_model(), src, GenerationConfig(max_new_tokens=8, ctc_weight=1.5))

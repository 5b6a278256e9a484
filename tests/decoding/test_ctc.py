"""CTC decoding: best path collapses repeats and drops blanks; prefix beam search finds the most
probable labelling (checked against brute force over every alignment)."""

from __future__ import annotations

import itertools

import pytest
import torch

from mmformer.ctc import ctc_greedy_decode, ctc_prefix_beam_search


def _one_hot_log_probs(paths: list[list[int]], vocab: int = 5) -> torch.Tensor:
    t = max(map(len, paths))
    lp = torch.full((len(paths), t, vocab), -20.0)
    for i, p in enumerate(paths):
        for f, label in enumerate(p):
            lp[i, f, label] = 0.0
    return lp


def test_greedy_collapses_repeats_and_removes_blanks() -> None:
    lp = _one_hot_log_probs([[1, 1, 0, 1, 2, 2, 0, 0, 3], [0, 0, 0, 0, 0, 0, 0, 0, 0], [4, 0, 4, 4, 0, 0, 0, 0, 4]])
    assert ctc_greedy_decode(lp) == [[1, 1, 2, 3], [], [4, 4, 4]]


def test_greedy_ignores_frames_past_each_length() -> None:
    lp = _one_hot_log_probs([[1, 2, 3, 4], [1, 0, 1, 2]])
    assert ctc_greedy_decode(lp, torch.tensor([2, 3])) == [[1, 2], [1, 1]]
    assert ctc_greedy_decode(lp, torch.tensor([2, 3]), blank=1) == [[2], [0]]


def _collapse(path: tuple[int, ...]) -> tuple[int, ...]:
    out, prev = [], None
    for p in path:
        if p != prev and p != 0:
            out.append(p)
        prev = p
    return tuple(out)


@pytest.mark.parametrize("seed", range(6))
def test_prefix_beam_search_finds_the_most_probable_labelling(seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    lp = (torch.randn(1, 6, 3, generator=g) * 2).log_softmax(-1)
    totals: dict[tuple[int, ...], torch.Tensor] = {}
    for path in itertools.product(range(3), repeat=6):  # every alignment, summed per labelling
        score = lp[0, torch.arange(6), torch.tensor(path)].sum()
        key = _collapse(path)
        totals[key] = torch.logaddexp(totals[key], score) if key in totals else score
    best = max(totals, key=lambda k: float(totals[k]))
    assert ctc_prefix_beam_search(lp, beam_size=64, prune=-1e9) == [list(best)]


def test_prefix_beam_search_beats_best_path_when_mass_is_spread() -> None:
    # Best path is all blanks (0.6 each), but label 1 spread over two frames is more probable overall:
    # P("") = 0.36, P("1") = 0.4*0.4 + 0.4*0.6 + 0.6*0.4 = 0.64.
    lp = torch.tensor([[[0.6, 0.4], [0.6, 0.4]]]).log()
    assert ctc_greedy_decode(lp) == [[]]
    assert ctc_prefix_beam_search(lp, beam_size=4) == [[1]]


def test_prefix_beam_search_respects_lengths_and_agrees_on_peaked_input() -> None:
    lp = _one_hot_log_probs([[1, 1, 0, 1, 2, 2, 0, 3], [2, 0, 2, 4, 4, 4, 4, 4]]).log_softmax(-1)
    lengths = torch.tensor([8, 3])
    assert ctc_prefix_beam_search(lp, lengths) == ctc_greedy_decode(lp, lengths) == [[1, 1, 2, 3], [2, 2]]
    with pytest.raises(ValueError, match="beam_size"):
        ctc_prefix_beam_search(lp, beam_size=0)
    with pytest.raises(ValueError, match=r"\(B, T, V\)"):
        ctc_prefix_beam_search(lp[0])

"""CTC best-path decoding: repeats collapse, blanks drop, frames past a row's length are ignored. (The CTC prefix
probabilities of hybrid search are checked against brute force in test_ctc_prefix.py.)"""

from __future__ import annotations

import pytest
import torch

from mmformer.decoding.ctc import ctc_greedy_decode


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


def test_greedy_rejects_a_batch_without_frames_and_labels_dims() -> None:
    with pytest.raises(ValueError, match=r"\(B, T, V\)"):
        ctc_greedy_decode(torch.zeros(4, 5))

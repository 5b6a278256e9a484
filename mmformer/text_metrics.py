"""Text-generation metrics by name, from torchmetrics (states sync across DDP ranks).

BLEU is sacrebleu's corpus BLEU (13a tokenization) and chrF sacrebleu's chrF, both on the
0–100 scale sacrebleu prints; WER and CER are reported in percent as well, and so is exact match
(the share of outputs equal to their reference). Every metric reads the decoded strings as they
are: case and punctuation count; exact match, like WER, compares words (whitespace runs and the
ends of a string do not count).
"""

from __future__ import annotations

from typing import Any, Sequence

import torch
from torch import Tensor, nn
from torchmetrics import Metric
from torchmetrics.text import CharErrorRate, CHRFScore, SacreBLEUScore, WordErrorRate


class ExactMatch(Metric):
    """Sentence exact-match accuracy: the fraction of hypotheses whose words equal their reference's.

    Words are whitespace-separated, as WER counts them, so ``"a  red circle "`` matches ``"a red circle"``;
    case and punctuation count. The counts are summed across DDP ranks before ``compute``.
    """

    is_differentiable = False
    higher_is_better = True
    full_state_update = False
    correct: Tensor
    total: Tensor

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.add_state("correct", torch.tensor(0, dtype=torch.long), dist_reduce_fx="sum")
        self.add_state("total", torch.tensor(0, dtype=torch.long), dist_reduce_fx="sum")

    def update(self, preds: str | Sequence[str], target: str | Sequence[str]) -> None:
        """Adds hypotheses ``preds`` and their references ``target`` (one string or a list of the same length)."""
        hyps = [preds] if isinstance(preds, str) else list(preds)
        refs = [target] if isinstance(target, str) else list(target)
        if len(hyps) != len(refs):
            raise ValueError(f"exact match needs one reference per hypothesis, got {len(hyps)} and {len(refs)}")
        self.correct += sum(h.split() == r.split() for h, r in zip(hyps, refs))
        self.total += len(hyps)

    def compute(self) -> Tensor:
        """The fraction of exact matches (0 when nothing was added)."""
        return self.correct.float() / self.total.clamp_min(1)


METRICS = {
    "bleu": lambda: SacreBLEUScore(tokenize="13a"),
    "chrf": lambda: CHRFScore(n_word_order=0),  # sacrebleu's chrF (torchmetrics defaults to chrF++)
    "wer": WordErrorRate,
    "cer": CharErrorRate,
    "exact": ExactMatch,
}


def text_metrics(names: list[str]) -> nn.ModuleDict:
    """``names`` ⊆ {bleu, chrf, wer, cer, exact} → a ModuleDict of fresh metrics."""
    unknown = sorted(set(names) - set(METRICS))
    if unknown:
        raise ValueError(f"unknown text metrics {unknown}; choose from {sorted(METRICS)}")
    return nn.ModuleDict({n: METRICS[n]() for n in names})


def update(metrics: nn.ModuleDict, hyps: list[str], refs: list[str]) -> None:
    """Adds a batch of hypotheses and references to every metric."""
    for name, metric in metrics.items():
        if name in ("bleu", "chrf"):
            metric.update(hyps, [[r] for r in refs])
        else:
            metric.update(hyps, refs)

"""Text-generation metrics by name, from torchmetrics (states sync across DDP ranks).

BLEU is sacrebleu's corpus BLEU (13a tokenization) and chrF sacrebleu's chrF, both on the
0–100 scale sacrebleu prints; WER and CER are reported in percent as well.
"""

from __future__ import annotations

from torch import nn
from torchmetrics.text import CharErrorRate, CHRFScore, SacreBLEUScore, WordErrorRate

METRICS = {
    "bleu": lambda: SacreBLEUScore(tokenize="13a"),
    "chrf": lambda: CHRFScore(n_word_order=0),  # sacrebleu's chrF (torchmetrics defaults to chrF++)
    "wer": WordErrorRate,
    "cer": CharErrorRate,
}


def text_metrics(names: list[str]) -> nn.ModuleDict:
    """``names`` ⊆ {bleu, chrf, wer, cer} → a ModuleDict of fresh metrics."""
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

"""The text metrics the tasks log equal sacrebleu's own corpus BLEU / chrF and jiwer-style WER."""

import pytest
import sacrebleu

from mmformer.text_metrics import text_metrics, update

HYPS = ["el gato está en la mesa", "un perro pequeño ladró", "la casa roja", "hola"]
REFS = ["el gato es en la mesa", "un perro pequeño ladró ruidosamente", "la casa roja", "adiós amigo"]


def test_bleu_and_chrf_equal_sacrebleu_and_wer_counts_word_edits() -> None:
    metrics = text_metrics(["bleu", "chrf", "wer", "cer"])
    update(metrics, HYPS[:2], REFS[:2])  # accumulated over two batches, like an epoch
    update(metrics, HYPS[2:], REFS[2:])
    assert float(metrics["bleu"].compute()) * 100 == pytest.approx(sacrebleu.corpus_bleu(HYPS, [REFS]).score, abs=1e-3)
    assert float(metrics["chrf"].compute()) * 100 == pytest.approx(sacrebleu.corpus_chrf(HYPS, [REFS]).score, abs=0.05)  # 0.014 apart
    # word edits: 1 substitution + 1 deletion + 0 + 2 (1 substitution, 1 deletion) over 6 + 5 + 3 + 2 reference words
    assert float(metrics["wer"].compute()) == pytest.approx(4 / 16)


def test_unknown_metric_is_named() -> None:
    with pytest.raises(ValueError, match="bleu4"):
        text_metrics(["bleu4"])

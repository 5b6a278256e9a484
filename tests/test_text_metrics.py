"""The text metrics the tasks log equal sacrebleu's own corpus BLEU / chrF and jiwer-style WER; exact match
counts outputs equal word for word to their reference, over batches and across DDP ranks."""

import pytest
import sacrebleu

from mmformer.text_metrics import ExactMatch, text_metrics, update

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


def test_exact_match_counts_outputs_equal_word_for_word_over_batches() -> None:
    metrics = text_metrics(["exact"])
    update(metrics, HYPS[:2], REFS[:2])
    update(metrics, HYPS[2:], REFS[2:])  # only "la casa roja" matches
    assert float(metrics["exact"].compute()) == pytest.approx(1 / 4)
    metric = ExactMatch()
    metric.update([" la  casa roja", "La casa roja", "la casa roja.", "la casa"], ["la casa roja"] * 4)
    assert float(metric.compute()) == pytest.approx(1 / 4), "whitespace runs and ends do not count; case, punctuation and words do"


def test_exact_match_states_sum_across_ranks_like_one_process_over_all_rows() -> None:
    ranks = [ExactMatch(), ExactMatch()]
    ranks[0].update(HYPS[:1], REFS[:1])  # rank 0: no match out of 1
    ranks[1].update(HYPS[1:], REFS[1:])  # rank 1: one match out of 3
    ranks[0].merge_state(ranks[1])  # the dist_reduce_fx DDP sync applies
    everything = ExactMatch()
    everything.update(HYPS, REFS)
    assert float(ranks[0].compute()) == float(everything.compute()) == pytest.approx(1 / 4)
    with pytest.warns(UserWarning, match="before the ``update``"):
        assert float(ExactMatch().compute()) == 0.0  # nothing added


def test_exact_match_needs_one_reference_per_hypothesis() -> None:
    with pytest.raises(ValueError, match="one reference per hypothesis, got 2 and 1"):
        ExactMatch().update(["a", "b"], ["a"])

"""The text tasks' shared base: the headline metric fits the references (BLEU is 0 on references shorter
than 4 words, so such data chooses its best checkpoint by exact match or chrF), through `mmformer fit`."""

from __future__ import annotations

from pathlib import Path

import pytest

from mmformer.cli import main
from mmformer.tasks.best_checkpoint import BestCheckpoint
from mmformer.tasks.text_generation import fit_headline, short_share
from tests.test_pairings import FAST, TINY, TINY_SEQ2SEQ, write_pairing_manifests

ROOT = Path(__file__).resolve().parents[2]


def test_fit_headline_moves_bleu_aside_only_for_mostly_short_references() -> None:
    short, long = ["a red square"] * 3, ["a red square above a blue circle"] * 3
    assert short_share(short + long[:2]) == pytest.approx(0.6)
    names, why = fit_headline(["bleu", "chrf", "exact"], short)
    assert names == ["exact", "bleu", "chrf"] and "chosen by val/exact" in why
    names, why = fit_headline(["bleu", "chrf"], short)
    assert names == ["chrf", "bleu"] and "chosen by val/chrf" in why and "100% of the validation references" in why
    names, why = fit_headline(["bleu"], short)  # nothing better computed: the order stays, the warning says what to do
    assert names == ["bleu"] and "add 'exact' or 'chrf'" in why
    assert fit_headline(["bleu", "exact"], long) == (["bleu", "exact"], None)  # long references: BLEU stays
    assert fit_headline(["bleu", "exact"], short[:1] + long[:2]) == (["bleu", "exact"], None)  # a third short
    assert fit_headline(["wer", "exact"], short) == (["wer", "exact"], None)  # only BLEU gives way


@pytest.mark.slow
def test_captioning_on_three_word_captions_chooses_best_by_exact_match(tmp_path: Path,
                                                                      capsys: pytest.CaptureFixture[str]) -> None:
    """The captioning recipe over a user's manifests of 3-word captions ('a red square'): the best checkpoint
    follows val/exact, said once at start-up, instead of a BLEU that is 0 at every validation."""
    data = write_pairing_manifests(tmp_path / "manifests")
    args = ["fit", "--config", str(ROOT / "tasks" / "image_captioning.yaml"),
            f"--trainer.default_root_dir={tmp_path / 'runs'}", *FAST,
            *[f"--data.init_args.{s}={data / f'{s}.jsonl'}" for s in ("train", "val", "test")],
            f"--data.init_args.data_dir={data / 'data'}", "--data.init_args.batch_size=12",
            "--data.init_args.vocab_size=24", "--model.init_args.model.target_vocab_size=24",
            *[f"--model.init_args.{k}={v}" for k, v in TINY_SEQ2SEQ.items() if k != "generation"],
            "--model.init_args.model.decoder_depth=1",
            *[f"--model.init_args.model.backbone.{k}={v}" for k, v in TINY.items()]]
    cli = main(args)
    best = next(c for c in cli.trainer.callbacks if isinstance(c, BestCheckpoint))
    assert (best.monitor, best.mode) == ("val/exact", "max")
    err = capsys.readouterr().err
    assert err.count("shorter than 4 words") == 1 and "chosen by val/exact" in err
    assert (Path(cli.trainer.log_dir) / "checkpoints" / "best.ckpt").is_file()

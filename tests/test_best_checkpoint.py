"""The best checkpoint by a validation metric, beside last.ckpt: which metric each task ranks by, that the
kept file is the best-scoring validation, and clear errors for a metric the run would never log."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
import torch

from mmformer.backbone import BackboneConfig
from mmformer.checkpoint import read_checkpoint
from mmformer.cli import main
from mmformer.tasks.best_checkpoint import BestCheckpoint, auto_mode, text_headline, text_monitor_problem
from mmformer.tasks.seq2seq import Seq2SeqTask
from mmformer.tokenizers.text import TextTokenizer
from tests.doc_sections import doc_section
from mmformer.models.config import DecisionTransformerConfig, Seq2SeqConfig

ROOT = Path(__file__).resolve().parents[1]
DIGITS = str(ROOT / "tasks" / "image_classification_digits.yaml")
QUIET = ["--trainer.enable_progress_bar=false"]


def _val_scores(run: Path, key: str) -> dict[int, float]:
    """``{step: value}`` of ``key`` in the run's metrics.csv."""
    with open(run / "metrics.csv") as f:
        return {int(r["step"]): float(r[key]) for r in csv.DictReader(f) if r.get(key)}


@pytest.mark.parametrize("key, mode", [("val/loss", "min"), ("val/wer", "min"), ("val/cer_ctc", "min"),
                                       ("val/ppl_bigram", "min"), ("val/bleu", "max"), ("val/t2i_r@1", "max"),
                                       ("val/acc", "max"), ("val/return@500", "max")])
def test_auto_mode_minimizes_losses_and_error_rates_only(key: str, mode: str) -> None:
    assert auto_mode(key) == mode


def test_seq2seq_ranks_by_its_first_metric_while_validation_decodes() -> None:
    def task(metrics: list[str], n: int) -> Seq2SeqTask:
        return Seq2SeqTask(Seq2SeqConfig(lambda d: TextTokenizer(d, 14), 14, backbone=BackboneConfig(dim=16, depth=1, num_heads=2)), metrics=metrics, val_generate_batches=n)

    assert task(["bleu", "chrf"], 1).headline_metric() == ("val/bleu", "max")  # translation
    assert task(["wer", "cer"], 2).headline_metric() == ("val/wer", "min")  # speech recognition
    assert task(["bleu"], 0).headline_metric() == ("val/loss", "min")  # nothing decoded: the loss
    assert "val_generate_batches >= 1" in task(["bleu"], 0).monitor_problem("val/bleu")
    assert "lists 'chrf'" in task(["bleu"], 1).monitor_problem("val/chrf")
    assert task(["bleu"], 1).monitor_problem("val/bleu") is None and task(["bleu"], 0).monitor_problem("val/loss") is None
    assert text_headline([], 3, "val/ppl") == ("val/ppl", "min") and text_monitor_problem("test/bleu", [], 0) is None


def test_best_checkpoint_is_the_best_validation_and_last_ckpt_stays(tmp_path: Path) -> None:
    cli = main(["fit", "--config", DIGITS, f"--trainer.default_root_dir={tmp_path}", "--trainer.max_epochs=3",
                "--trainer.limit_train_batches=4", *QUIET])
    folder = Path(cli.trainer.log_dir) / "checkpoints"
    best_cb = next(c for c in cli.trainer.callbacks if isinstance(c, BestCheckpoint))
    assert (best_cb.monitor, best_cb.mode) == ("val/acc", "max")  # the task's headline metric
    assert sorted(p.name for p in folder.glob("last*.ckpt")) == ["last.ckpt"]  # one writer of last.ckpt
    scores = _val_scores(Path(cli.trainer.log_dir), "val/acc")
    assert len(scores) == 3
    best = read_checkpoint(folder / "best.ckpt")
    # the step of the best validation (the earliest of equal ones: a tie does not replace the kept file)
    best_step = min(scores, key=lambda s: (-scores[s], s))
    assert best["global_step"] == best_step + 1  # metrics.csv logs validation at the last batch's 0-based step
    assert read_checkpoint(folder / "last.ckpt")["global_step"] == max(scores) + 1
    assert best_cb.best_model_score == pytest.approx(scores[best_step])


def test_a_monitored_key_that_is_never_logged_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"'val/accuracy' was not logged by this validation run \(logged: val/acc"):
        main(["fit", "--config", DIGITS, f"--trainer.default_root_dir={tmp_path}", "--trainer.max_epochs=1",
              "--trainer.limit_train_batches=2", "--best_checkpoint.monitor=val/accuracy", *QUIET])


def test_the_best_checkpoint_can_be_switched_off_or_kept_as_several_files(tmp_path: Path) -> None:
    args = ["fit", "--config", DIGITS, "--trainer.max_epochs=2", "--trainer.limit_train_batches=2", *QUIET]
    cli = main([*args, f"--trainer.default_root_dir={tmp_path / 'off'}", "--best_checkpoint.monitor=null"])
    assert not list(Path(cli.trainer.log_dir).rglob("best*.ckpt"))
    cli = main([*args, f"--trainer.default_root_dir={tmp_path / 'k2'}", "--best_checkpoint.save_top_k=2",
                "--best_checkpoint.monitor=val/loss"])
    names = sorted(p.name for p in Path(cli.trainer.log_dir).rglob("best*.ckpt"))
    assert names == ["best-step2.ckpt", "best-step4.ckpt"]
    assert next(c for c in cli.trainer.callbacks if isinstance(c, BestCheckpoint)).mode == "min"


def test_a_run_without_checkpointing_builds_without_the_best_checkpoint(tmp_path: Path) -> None:
    cli = main(["--config", DIGITS, "--trainer.enable_checkpointing=false", "--trainer.callbacks=[]",
                f"--trainer.default_root_dir={tmp_path}"], run=False)
    assert not any(isinstance(c, BestCheckpoint) for c in cli.trainer.callbacks)


@pytest.mark.slow
def test_seq2seq_monitoring_a_metric_validation_does_not_decode_fails_at_start(tmp_path: Path) -> None:
    from tests.tasks.test_seq2seq import _toy_translation_recipe

    recipe, small = _toy_translation_recipe(tmp_path)
    with pytest.raises(ValueError, match=r"best_checkpoint.monitor='val/bleu'.*val_generate_batches=0: set "
                                         r"model.init_args.val_generate_batches >= 1"):
        main(["fit", "--config", str(recipe), *small, "--trainer.max_steps=1", "--model.init_args.val_generate_batches=0",
              "--best_checkpoint.monitor=val/bleu"])


def test_the_decision_transformer_ranks_by_return_only_while_every_validation_rolls_out() -> None:
    from mmformer.tasks.decision_transformer import DecisionTransformerTask
    from mmformer.tokenizers.trajectory import TrajectoryTokenizer

    def task(**kw) -> DecisionTransformerTask:
        return DecisionTransformerTask(DecisionTransformerConfig(lambda d: TrajectoryTokenizer(d, state_dim=3, act_dim=1, discrete_actions=False), BackboneConfig(dim=16, depth=1, num_heads=2)), target_returns=[500, 150], **kw)

    assert task().headline_metric() == ("val/return@500", "max")
    assert task(val_rollout_every=2).headline_metric() == ("val/loss", "min")
    assert "val_rollout_every=1" in task(val_rollout_every=2).monitor_problem("val/return@500")
    assert "val_targets" in task().monitor_problem("val/return@150")  # validation rolls out at 500 only
    assert task(val_targets=[500, 150]).monitor_problem("val/return@150") is None


def test_keeping_the_best_checkpoint_does_not_change_training(tmp_path: Path) -> None:
    """Same seed with and without it: the same last weights (saving draws no random numbers)."""
    weights = []
    for name, monitor in (("on", "auto"), ("off", "null")):
        cli = main(["fit", "--config", DIGITS, f"--trainer.default_root_dir={tmp_path / name}", "--trainer.max_epochs=2",
                    "--trainer.limit_train_batches=3", f"--best_checkpoint.monitor={monitor}", *QUIET])
        weights.append(read_checkpoint(Path(cli.trainer.log_dir) / "checkpoints" / "last.ckpt")["state_dict"])
    assert weights[0].keys() == weights[1].keys()
    assert all(torch.equal(weights[0][k], weights[1][k]) for k in weights[0])


def test_the_docs_best_checkpoint_section_names_real_settings() -> None:
    import inspect
    import re

    import yaml

    section = doc_section("Choosing checkpoints")
    settings = yaml.safe_load(re.findall(r"```yaml\n(.*?)```", section, re.S)[0])["best_checkpoint"]
    assert set(settings) <= set(inspect.signature(BestCheckpoint).parameters)
    BestCheckpoint(**settings)

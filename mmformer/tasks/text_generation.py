"""What the text-writing tasks share (:class:`~mmformer.tasks.seq2seq.Seq2SeqTask`,
:class:`~mmformer.tasks.prefix_lm.PrefixLMTask`): the target vocabulary bound from the data and stored in
checkpoints, the decoded-text metrics and the headline metric chosen to fit the references, validation's
greedy decoding, ``predictions.tsv`` and the optimizer.

Why the headline depends on the data: corpus BLEU multiplies the 1- to 4-gram precisions, so on references
shorter than 4 words (3-word captions, keywords, labels spoken as text) it is 0 whatever the model writes,
and a best checkpoint chosen by it is the first one saved. Such data gets its best checkpoint from exact match
or chrF instead (:func:`fit_headline`), said once at start-up.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, ClassVar, Sequence

from torch import Tensor, nn

from mmformer.data.spec import DataSpec
from mmformer.decoding import GenerationConfig, validation_greedy
from mmformer.tasks.base import TaskModule
from mmformer.tasks.best_checkpoint import text_headline, text_monitor_problem
from mmformer.tasks.optim import OptimConfig, build_optimizer, epoch_steps
from mmformer.text_metrics import text_metrics, update
from mmformer.tokenizers.sentencepiece_vocab import BOS_ID, EOS_ID, PAD_ID, SentencePieceVocab

SHORT_WORDS = 4  # BLEU's longest n-gram: a reference shorter than this has no 4-gram to match
VOCAB_KEY = "mmformer_vocab"  # checkpoint entry: the target vocabulary as a uint8 tensor (weights_only-safe)


def short_share(references: Sequence[str]) -> float:
    """The fraction of ``references`` with fewer than :data:`SHORT_WORDS` whitespace-separated words."""
    return sum(len(r.split()) < SHORT_WORDS for r in references) / max(1, len(references))


def _short_note(share: float) -> str:
    return (f"{share:.0%} of the validation references are shorter than {SHORT_WORDS} words, where corpus BLEU is 0 "
            f"whatever the model writes")


def fit_headline(names: list[str], references: Sequence[str]) -> tuple[list[str], str | None]:
    """``names`` (the task's metrics, the first is the headline) reordered to fit ``references``, and why.

    When BLEU leads and most references are shorter than 4 words, exact match (if computed) or chrF (if
    computed) leads instead; with neither, the order stays and the reason is a warning to act on.
    """
    share = short_share(references)
    if not names or names[0] != "bleu" or not references or share <= 0.5:
        return names, None
    better = next((n for n in ("exact", "chrf") if n in names), None)
    if better is None:
        return names, (f"{_short_note(share)}; the best checkpoint is still chosen by val/bleu: add 'exact' or "
                       f"'chrf' to model.init_args.metrics, or set best_checkpoint.monitor")
    return [better] + [n for n in names if n != better], f"{_short_note(share)}: the best checkpoint is chosen by val/{better}"


class TextGenerationTask(TaskModule):
    """Base of the tasks whose outputs are text decoded with a sentencepiece vocabulary.

    Subclasses set ``self.metrics`` (``{"val", "test"}`` → metric dicts), ``self.generation``,
    ``self.val_generate_batches``, ``self.optim`` and ``self._fallback_headline`` (the key ranked when nothing
    is decoded at validation), and append ``(name, text)`` rows to ``self._predictions`` while predicting.
    """

    required_data: ClassVar[tuple[str, ...]] = ("vocab",)
    metrics: nn.ModuleDict
    generation: GenerationConfig
    val_generate_batches: int
    optim: OptimConfig
    _fallback_headline: ClassVar[str] = "val/loss"

    def __init__(self) -> None:
        super().__init__()
        self._vocab: SentencePieceVocab | None = None
        self._predictions: list[tuple[str, str]] = []
        self._headline_names: list[str] | None = None  # the metrics reordered by fit_headline, once bound
        self._val_refs = [0, 0]  # (short, all) references decoded at validation since the last check
        self._headline_warned = False
        self._predict_names: Sequence[str] | None = None  # the data's name of each predict row

    @staticmethod
    def build_metrics(names: list[str]) -> nn.ModuleDict:
        """``{"val", "test"}`` → fresh :func:`~mmformer.text_metrics.text_metrics` of ``names``."""
        return nn.ModuleDict({s: text_metrics(names) for s in ("val", "test")})

    # ---- vocabulary --------------------------------------------------------------------------
    @property
    def vocab(self) -> SentencePieceVocab:
        if self._vocab is None:
            raise RuntimeError("no target vocabulary: run with a DataModule whose data_spec() provides vocab, or load "
                               "a checkpoint written by this task (it stores the vocabulary)")
        return self._vocab

    def required_data_for(self, stage: str) -> tuple[str, ...]:
        # predict decodes with the vocabulary the checkpoint stores: its data need not bring one
        return () if stage == "predict" else self.required_data

    def check_vocab(self, vocab: SentencePieceVocab, expected: int, setting: str) -> None:
        """One error naming both sizes when the data's vocabulary does not fit the model's."""
        if vocab.vocab_size != expected:
            raise ValueError(f"the data's sentencepiece vocabulary has {vocab.vocab_size} pieces but the model was "
                             f"built for {setting}={expected}; leave model.init_args.{setting} out (it follows the "
                             f"data), or set it to {vocab.vocab_size}")

    def bind_headline(self, spec: DataSpec, stage: str) -> None:
        """At ``fit``, reorders the metrics so the headline fits the validation references (:func:`fit_headline`)
        when the data can give them (``target_ids``); says so once, on stderr."""
        if stage != "fit" or spec.target_ids is None or spec.vocab is None or self._headline_names is not None:
            return
        try:
            ids = spec.target_ids("val")
        except KeyError:  # no validation split
            return
        names, why = fit_headline(list(self.metrics["val"].keys()), spec.vocab.decode(_strip_specials(ids)))
        self._headline_names = names
        if why and (self._trainer is None or self.trainer.is_global_zero):
            print(f"note: {why}", file=sys.stderr, flush=True)

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        super().on_save_checkpoint(checkpoint)
        checkpoint[VOCAB_KEY] = self.vocab.to_tensor()

    def checkpoint_spec(self, checkpoint: dict[str, Any]) -> DataSpec:
        """An older checkpoint (no stored model config) sizes the text by the vocabulary it stores."""
        if VOCAB_KEY in checkpoint:
            return DataSpec(vocab=SentencePieceVocab.from_tensor(checkpoint[VOCAB_KEY]))
        return DataSpec()

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        super().on_load_checkpoint(checkpoint)
        if VOCAB_KEY in checkpoint:
            self._vocab = SentencePieceVocab.from_tensor(checkpoint[VOCAB_KEY])

    # ---- checkpoint selection (mmformer.tasks.best_checkpoint) --------------------------------
    def headline_metric(self) -> tuple[str, str] | None:
        """``val/<first of metrics>`` (bleu max, wer min...; reordered to fit short references) while
        validation decodes; else the task's fallback key."""
        names = self._headline_names or list(self.metrics["val"].keys())
        return text_headline(names, self.val_generate_batches, self._fallback_headline)

    def monitor_problem(self, key: str) -> str | None:
        return text_monitor_problem(key, list(self.metrics["val"].keys()), self.val_generate_batches)

    # ---- evaluation --------------------------------------------------------------------------
    @property
    def val_generation(self) -> GenerationConfig:
        """Validation decodes greedily, with ``generation``'s length limits and anti-repetition options."""
        return validation_greedy(self.generation)

    def update_val_metrics(self, hyps: list[str], refs: list[str]) -> None:
        """Adds a decoded validation batch to ``val`` metrics, counting short references for the headline check."""
        update(self.metrics["val"], hyps, refs)
        self._val_refs[0] += sum(len(r.split()) < SHORT_WORDS for r in refs)
        self._val_refs[1] += len(refs)

    def warn_if_headline_unfit(self) -> None:
        """Once per run, at the first validation (the sanity check at start-up, by default): a warning when the
        best checkpoint is chosen by val/bleu over references mostly shorter than 4 words (data that could not
        say so before, without ``target_ids``)."""
        short, total = self._val_refs
        self._val_refs = [0, 0]
        if self._headline_warned or not total or self.headline_metric() != ("val/bleu", "max"):
            return
        self._headline_warned = True
        if short / total > 0.5 and self.trainer.is_global_zero:
            better = next((n for n in ("exact", "chrf") if n in self.metrics["val"]), None)
            fix = (f"set best_checkpoint.monitor: val/{better}" if better else
                   "add 'exact' or 'chrf' to model.init_args.metrics and set best_checkpoint.monitor to it")
            print(f"warning: {_short_note(short / total)}, and the best checkpoint is chosen by val/bleu: {fix}",
                  file=sys.stderr, flush=True)

    def log_text_metrics(self, stage: str, metrics: nn.ModuleDict, suffix: str = "") -> None:
        """Logs ``{stage}/{name}{suffix}`` (0-100) for every metric that saw a decoded batch, then resets them."""
        for name, metric in metrics.items():
            if metric.update_count:  # nothing decoded (e.g. val_generate_batches=0): nothing to log
                self.log(f"{stage}/{name}{suffix}", metric.compute() * 100, prog_bar=name in ("bleu", "wer"))
            metric.reset()

    def row_names(self, index: Any, batch_idx: int, n: int) -> list[str]:
        """Names of a predict batch's ``n`` rows: the data's ``predict_names`` at ``index`` (file names, manifest
        lines), else the row numbers."""
        if not isinstance(index, Tensor):
            return [str(batch_idx * n + i) for i in range(n)]
        names = self._predict_names
        return [str(names[i]) if names is not None else str(i) for i in index.tolist()]

    def on_predict_epoch_end(self) -> None:
        """Writes ``predictions.tsv`` (``name<TAB>text`` per row; ``predictions_<task>.tsv`` for a task in a
        composite, so that two text tasks keep both) in the run's log folder."""
        if not self._predictions:
            return
        folder = Path(self.trainer.log_dir or self.trainer.default_root_dir)
        folder.mkdir(parents=True, exist_ok=True)
        name = f"predictions_{self.task_context.name}.tsv" if self.task_context is not None else "predictions.tsv"
        (folder / name).write_text("".join(f"{i}\t{t}\n" for i, t in self._predictions))
        self._predictions = []

    def configure_optimizers(self) -> dict:
        return build_optimizer(self, self.optim, self.trainer.estimated_stepping_batches,
                               epoch_steps(self.trainer))


def _strip_specials(ids: Tensor) -> list[list[int]]:
    """``(N, T)`` bos + pieces + eos, pad 0 → the pieces of each row."""
    return [[i for i in row if i not in (BOS_ID, EOS_ID, PAD_ID)] for row in ids.tolist()]


__all__ = ["SHORT_WORDS", "TextGenerationTask", "fit_headline", "short_share"]

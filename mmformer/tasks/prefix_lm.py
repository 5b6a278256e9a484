"""Decoder-only language modelling with an optional prefix of any modality: a GPT-style causal LM (no
prefix) and an image-prefix captioner (patch tokens ahead of the text) are this one task over
:class:`~mmformer.models.prefix_lm.PrefixLM`. Loss on text tokens only; ``val/ppl`` and ``test/ppl``;
sampled text printed and logged to TensorBoard after each validation; predictions continue prompts.
"""

from __future__ import annotations

from typing import Any, Callable, ClassVar

import torch
from torch import Tensor, nn
from torchmetrics.text import Perplexity

from mmformer.backbone import BackboneConfig, BackboneOutput
from mmformer.bigram import BigramLM
from mmformer.data.spec import DataSpec
from mmformer.decoding import GenerationConfig, check_ctc_settings, generate, strip
from mmformer.losses import ctc_loss, sequence_cross_entropy
from mmformer.models.config import prefix_lm_config
from mmformer.models.prefix_lm import PrefixLM
from mmformer.tasks.optim import OptimConfig
from mmformer.tasks.seq2seq import source_line
from mmformer.tasks.text_generation import TextGenerationTask
from mmformer.text_metrics import update
from mmformer.tokenizers.base import ModalityTokenizer
from mmformer.tokenizers.sentencepiece_vocab import BOS_ID, EOS_ID, PAD_ID
from mmformer.tokenizers.text import TextPositions

Batch = dict[str, Any]  # {"target": (B, T) bos + ids + eos, pad 0; "source"?: the prefix input; "prompt"?; ...}


class PrefixLMTask(TextGenerationTask):
    """Trains and evaluates a :class:`PrefixLM`: ``[prefix | text]`` in one causal backbone.

    Batches are dicts: ``target`` ``(B, T)`` long = bos + ids + eos, right-padded with 0, and its strings
    ``target_text``; with a prefix tokenizer also ``source`` (what it takes: images ``(B, C, H, W)``,
    audio...). Predict batches may carry ``prompt`` ``(B, L)`` (ids + eos, pad 0: the text each continuation
    starts with) instead of ``target``. The data declares ``vocab``; the vocabulary is stored in
    checkpoints. When the data also gives ``target_ids`` (e.g. :class:`~mmformer.data.ManifestData`),
    fitting first fits an interpolated Kneser-Ney bigram model on the training targets and logs its
    validation perplexity as ``val/ppl_bigram``, beside the model's ``val/ppl`` (same tokens, same positions).

    Args:
        vocab_size: size of the sentencepiece vocabulary; None = the data's ``vocab`` (set in one place; a text
            prefix tokenizer without ``vocab_size`` takes the data's ``source_vocab`` the same way).
        prefix_tokenizer: builds the prefix tokenizer from the width, ``prefix_tokenizer(dim)``; None = a
            plain causal language model.
        backbone: the decoder-only stack (made causal whatever ``causal`` says).
        text_positions: positional scheme of the text embedding (``rope`` also sets the backbone's rope).
        text_scale: multiply text embeddings by sqrt(D) (Vaswani et al.; the table's std then defaults to
            D^-0.5, so tokens enter at unit size). With ``share_prefix_embedding`` the prefix tokenizer's
            ``scale`` must match: one table, one size.
        text_init_std: std of the text embedding's initial weights (the output projection's, when tied);
            None = D^-0.5 with ``text_scale``, else 0.02.
        max_len: longest text (bos and eos included) the position table takes.
        tie_embeddings: tie the text embedding and the output projection.
        share_prefix_embedding: a text prefix over the same vocabulary (translation as a prefix LM: the source
            sentence ahead of its translation) reads it with the text's own embedding table; its positions stay
            its own, which tells source from target.
        label_smoothing: of the training cross-entropy (perplexities are always of the plain one).
        ctc_weight: weight of a CTC loss on the prefix's backbone states (blank = pad id; speech): the loss is
            ``(1 - w) * CE + w * CTC``, and ``generation.ctc_weight`` then decodes with the hybrid
            CTC/attention beam search, which keeps the text from running past the audio. 0 = no CTC head.
        metrics: text metrics on decoded outputs (bleu, chrf, wer, cer, exact), ``{stage}/{name}``: greedy
            over ``val_generate_batches`` validation batches, ``generation`` over the test set.
        generation: decoding for validation samples, test metrics and predict (sampling with top-k/top-p
            for a language model, greedy or beam for a captioner).
        val_generate_batches: validation batches decoded for ``val/<metric>``.
        num_samples: texts generated, printed and logged after each validation (from the first batch's
            prefixes) and printed after test.
        bigram_baseline: fit and log the bigram baseline when the data gives ``target_ids``.
        optim: AdamW and schedule.
    """

    _fallback_headline: ClassVar[str] = "val/ppl"
    model: PrefixLM  # built by build_model (or a composite's part: mmformer.tasks.composition)

    def __init__(
        self,
        vocab_size: int | None = None,
        prefix_tokenizer: Callable[[int], ModalityTokenizer] | None = None,
        backbone: BackboneConfig | None = None,
        text_positions: TextPositions = "learned",
        text_scale: bool = False,
        text_init_std: float | None = None,
        max_len: int = 256,
        tie_embeddings: bool = True,
        share_prefix_embedding: bool = False,
        label_smoothing: float = 0.0,
        ctc_weight: float = 0.0,
        metrics: list[str] | None = None,
        generation: GenerationConfig | None = None,
        val_generate_batches: int = 1,
        num_samples: int = 4,
        bigram_baseline: bool = True,
        optim: OptimConfig | None = None,
    ) -> None:
        super().__init__()
        check_ctc_settings(ctc_weight, generation)
        self.label_smoothing, self.ctc_weight = label_smoothing, ctc_weight
        self.generation = generation or GenerationConfig(strategy="sample", top_k=50, top_p=0.95, max_new_tokens=40)
        self.val_generate_batches, self.num_samples, self.bigram_baseline = val_generate_batches, num_samples, bigram_baseline
        self.optim = optim or OptimConfig()
        self.ppl = nn.ModuleDict({s: Perplexity(ignore_index=PAD_ID) for s in ("val", "test")})
        self.metrics = self.build_metrics(list(metrics or []))
        self._bigram_ppl: float | None = None
        self._samples: list[str] = []
        self.init_model(prefix_lm_config(vocab_size, prefix_tokenizer, backbone, text_positions, text_scale,
                                         text_init_std, max_len, tie_embeddings, share_prefix_embedding, ctc_weight))

    def on_model_built(self) -> None:
        self.vocab_size = self.model_config.vocab_size

    # ---- data ------------------------------------------------------------------------------
    def bind_data(self, spec: DataSpec, stage: str) -> None:
        self._predict_names = spec.predict_names
        if spec.vocab is None or self.model is None:
            return
        self.check_vocab(spec.vocab, self.vocab_size, "vocab_size")
        self._vocab = spec.vocab
        self.bind_headline(spec, stage)
        if stage == "fit" and self.bigram_baseline and spec.target_ids is not None and self._bigram_ppl is None:
            try:
                train, val = spec.target_ids("train"), spec.target_ids("val")
            except KeyError:  # no validation split: nothing to compare with
                return
            self._bigram_ppl = BigramLM(self.vocab_size, pad_id=PAD_ID).fit(train).perplexity(val)
            print(f"bigram baseline (interpolated Kneser-Ney, fit on {len(train):,} training texts): "
                  f"val/ppl_bigram {self._bigram_ppl:.2f}", flush=True)

    # ---- training ----------------------------------------------------------------------------
    def _prefix(self, batch: Batch, rows: int) -> BackboneOutput:
        """The batch's prefix tokens (empty for a plain language model)."""
        if self.model.prefix_tokenizer is None:
            return self.model.encode(rows)
        if "source" not in batch:
            raise ValueError("this model reads a prefix: batches need a 'source' (map data inputs.source to a field)")
        return self.model.encode(batch["source"])

    def _logits(self, batch: Batch) -> tuple[Tensor, Tensor, BackboneOutput, Tensor | None]:
        """Teacher forcing: text logits ``(B, T-1, V)``, labels ``(B, T-1)``, the prefix, and the CTC loss
        on the prefix's states (None without a CTC head)."""
        target = batch["target"]
        if target.dim() != 2 or target.shape[1] < 2:
            raise ValueError(f"target must be (B, T>=2) ids = bos + pieces + eos, got shape {tuple(target.shape)}")
        prefix = self._prefix(batch, target.shape[0])
        out = self.model.decode(target[:, :-1], prefix)
        ctc = None
        if self.model.ctc_head is not None:
            p = prefix.hidden.shape[1]
            ctc_logits = self.model.ctc_logits(prefix, out.output.hidden[:, :p])  # (B, P, V)
            ctc = ctc_loss(ctc_logits, prefix.mask, target[:, 1:], blank=PAD_ID, special_ids=(EOS_ID, BOS_ID))
        return out.logits, target[:, 1:], prefix, ctc

    def _loss(self, ce: Tensor, ctc: Tensor | None) -> Tensor:
        return ce if ctc is None else (1 - self.ctc_weight) * ce + self.ctc_weight * ctc

    def training_step(self, batch: Batch, batch_idx: int) -> Tensor:
        logits, labels, _, ctc = self._logits(batch)
        loss = self._loss(sequence_cross_entropy(logits, labels, self.label_smoothing, ignore_index=PAD_ID), ctc)
        if ctc is not None:
            self.log("train/ctc", ctc, batch_size=labels.shape[0])
        self.log("train/loss", loss, prog_bar=True, batch_size=labels.shape[0])
        return loss

    # ---- evaluation --------------------------------------------------------------------------
    def _evaluate(self, batch: Batch, stage: str) -> BackboneOutput:
        logits, labels, prefix, ctc = self._logits(batch)
        loss = self._loss(sequence_cross_entropy(logits, labels, 0.0, ignore_index=PAD_ID), ctc)
        self.log(f"{stage}/loss", loss, batch_size=labels.shape[0], sync_dist=True)
        self.ppl[stage].update(logits.float(), labels)
        self.log(f"{stage}/ppl", self.ppl[stage], prog_bar=True, batch_size=labels.shape[0])
        return prefix

    def _decode(self, prefix: BackboneOutput, cfg: GenerationConfig, prompt: Tensor | None = None) -> list[str]:
        return self.vocab.decode(strip(generate(self.model, None, cfg, memory=prefix, prompt=prompt)))

    def validation_step(self, batch: Batch, batch_idx: int) -> None:
        prefix = self._evaluate(batch, "val")
        if batch_idx < self.val_generate_batches and len(self.metrics["val"]):
            self.update_val_metrics(self._decode(prefix, self.val_generation), batch["target_text"])
        if batch_idx == 0 and self.num_samples > 0:
            n = min(self.num_samples, batch["target"].shape[0])
            rows = prefix._replace(hidden=prefix.hidden[:n], mask=None if prefix.mask is None else prefix.mask[:n])
            texts = self._decode(rows, self.generation)
            self._samples = [self._sample_line(batch, i, t) for i, t in enumerate(texts)]

    def _sample_line(self, batch: Batch, i: int, text: str) -> str:
        if self.model.prefix_tokenizer is None:
            return text
        return f"{source_line(batch, i)} → {text}"

    def on_validation_epoch_end(self) -> None:
        self.warn_if_headline_unfit()
        self.log_text_metrics("val", self.metrics["val"])
        if self._bigram_ppl is not None:
            self.log("val/ppl_bigram", self._bigram_ppl, prog_bar=True)
        if self._samples and self.trainer.is_global_zero and not self.trainer.sanity_checking:
            text = "\n".join(self._samples)
            print(f"\nsamples at step {self.global_step}:\n{text}", flush=True)
            for logger in self.loggers:
                if hasattr(logger.experiment, "add_text"):
                    logger.experiment.add_text("val/samples", text.replace("\n", "  \n"), global_step=self.global_step)
        self._samples = []

    def test_step(self, batch: Batch, batch_idx: int) -> None:
        prefix = self._evaluate(batch, "test")
        if len(self.metrics["test"]) or (batch_idx == 0 and self.num_samples > 0):
            hyps = self._decode(prefix, self.generation)
            if len(self.metrics["test"]):
                update(self.metrics["test"], hyps, batch["target_text"])
            if batch_idx == 0:
                self._samples = [self._sample_line(batch, i, h) for i, h in enumerate(hyps[: self.num_samples])]

    def on_test_epoch_end(self) -> None:
        self.log_text_metrics("test", self.metrics["test"])
        if self._samples and self.trainer.is_global_zero:
            print("\n" + "\n".join(self._samples), flush=True)
        self._samples = []

    def predict_step(self, batch: Batch, batch_idx: int) -> list[str]:
        """Generated texts: continuations of ``prompt`` (each output starts with its prompt) when the batch
        has one, else texts from bos after the prefix."""
        rows = len(batch["index"]) if "index" in batch else batch["target"].shape[0]
        prompt = batch.get("prompt")
        if prompt is not None:  # ids + eos → the ids (the continuation must not start after an eos)
            prompt = prompt.masked_fill(prompt == EOS_ID, PAD_ID)
        texts = self._decode(self._prefix(batch, rows), self.generation, prompt)
        names = batch.get("id") or self.row_names(batch.get("index"), batch_idx, rows)
        for name, text in zip(names, texts):
            print(text, flush=True)
            self._predictions.append((str(name), text))
        return texts


__all__ = ["PrefixLMTask"]

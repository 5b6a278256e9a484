"""Sequence-to-text of any source modality: translation (text source), speech recognition (audio
source), captioning (image source). Encoder + causal decoder with cross-attention, teacher-forced
label-smoothed cross-entropy, optional CTC head on the encoder (part of the model, so exports keep
it), decoding with mmformer.decoding.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Sequence

import torch
from torch import Tensor

from mmformer.backbone import BackboneConfig, BackboneOutput
from mmformer.decoding.ctc import ctc_greedy_decode
from mmformer.data.common.packing import PACK_KEY, plan_packing, token_counter
from mmformer.data.spec import DataSpec
from mmformer.decoding import GenerationConfig, check_ctc_settings, generate, strip
from mmformer.losses import ctc_loss, sequence_cross_entropy
from mmformer.models.config import seq2seq_config
from mmformer.models.seq2seq import Seq2Seq
from mmformer.tasks.optim import OptimConfig
from mmformer.tasks.text_generation import TextGenerationTask
from mmformer.text_metrics import text_metrics, update
from mmformer.tokenizers.base import ModalityTokenizer
from mmformer.tokenizers.sentencepiece_vocab import BOS_ID, EOS_ID, PAD_ID, SentencePieceVocab
from mmformer.tokenizers.text import TextPositions

Batch = dict[str, Any]  # {"source": ..., "target": (B, T) [bos] ids [eos] pads, "target_text": [...], "index": ...}


def describe_source(source: Any, row: int, index: Any = None, vocab: SentencePieceVocab | None = None) -> str:
    """A printable line for row ``row`` of a source batch without ``source_text``: text ids decoded with
    the source vocabulary, otherwise the kind and size of the input (image, audio...) and its data row."""
    where = f" (row {int(index[row])})" if isinstance(index, Tensor) else ""
    if isinstance(source, Tensor) and source.dtype == torch.long and source.dim() == 2:
        ids = source[row : row + 1]
        return (vocab.decode(ids)[0] if vocab is not None else " ".join(map(str, ids[0].tolist()))) + where
    if isinstance(source, Tensor) and source.dim() == 4:
        return f"image {'x'.join(map(str, source.shape[1:]))}{where}"
    lengths = getattr(source, "lengths", None)  # AudioBatch and other padded batches
    if isinstance(lengths, Tensor):
        return f"{type(source).__name__.removesuffix('Batch').lower() or 'input'} of {int(lengths[row])} samples{where}"
    return f"{type(source).__name__}{where}"


def source_line(batch: dict[str, Any], row: int, vocab: SentencePieceVocab | None = None) -> str:
    """Row ``row``'s source as printed beside its output: the batch's ``source_text`` when the data carries the
    sentences, else :func:`describe_source`."""
    if "source_text" in batch:
        return batch["source_text"][row]
    return describe_source(batch["source"], row, batch.get("index"), vocab)


class Seq2SeqTask(TextGenerationTask):
    """Trains and evaluates a :class:`~mmformer.models.Seq2Seq` model.

    Batches are dicts: ``source`` (whatever the source tokenizer takes: text ids, an ``AudioBatch``,
    images ``(B, C, H, W)``...), ``target`` ``(B, T)`` long = bos + ids + eos, right-padded with 0,
    ``target_text`` (reference strings) and optionally ``source_text``, ``index`` (data rows, named by
    the data's ``predict_names`` in predictions) or ``id``. The data declares ``vocab`` (the target
    :class:`SentencePieceVocab`, required) and ``source_vocab`` (for plots); the vocabulary is also
    stored in checkpoints so a trained model decodes without the training data.

    Test runs print and write ``samples.txt`` (a source without ``source_text`` is described by its
    kind, size and row), plot the first sample's cross-attention (``cross_attention.png``) and, for an
    image source through a patch tokenizer, where each generated word attends (``word_attention.png``).

    Args:
        source_tokenizer: builds the source tokenizer from the encoder width, ``source_tokenizer(dim)``.
        target_vocab_size: size of the target sentencepiece vocabulary; None = the data's ``vocab`` (set in one
            place; a text source tokenizer without ``vocab_size`` takes the data's ``source_vocab`` the same way).
        backbone: the encoder (named ``backbone`` like every task's, so ``configs/model/*.yaml`` size it).
        decoder: the decoder; None = the backbone's config with ``depth = decoder_depth or backbone.depth``
            (T5's ``num_decoder_layers``). Its memory width is the encoder's dim.
        decoder_depth: decoder blocks when ``decoder`` is None.
        target_positions: positional scheme of the target embedding.
        target_scale: multiply target embeddings by sqrt(D) (Vaswani et al.; with the table's std D^-0.5
            the embedded tokens have unit size, as large as sinusoidal positions).
            With ``share_source_embedding`` the source tokenizer's ``scale`` must match: one table, one size.
        target_init_std: std of the target embedding's initial weights (the shared table's, when shared;
            the output projection's, when tied); None = D^-0.5 with ``target_scale``, else 0.02.
        max_target_len: longest target the decoder accepts, bos and eos included.
        tie_embeddings: tie the target embedding and the output projection.
        share_source_embedding: with a text source over the same vocabulary, one embedding table
            for source, target and output (Vaswani et al. 2017, §3.4).
        label_smoothing: of the decoder's cross-entropy.
        ctc_weight: weight of a CTC loss on the encoder (blank = pad id); the loss is
            ``(1 - w) * CE + w * CTC``; 0 = no CTC head.
        metrics: text metrics on decoded outputs (bleu, chrf, wer, cer, exact), logged as ``{stage}/{name}``;
            the first is the headline the best checkpoint is chosen by (BLEU gives way to exact match or chrF
            when most validation references are shorter than 4 words: see :mod:`mmformer.tasks.text_generation`).
        generation: decoding at test and predict time (strategy, beam, length limits ``max_new_tokens`` and
            ``max_len_a * source_len + max_len_b``, ``no_repeat_ngram_size``, ``repetition_penalty``...);
            validation decodes greedily with its limits and anti-repetition options.
        val_generate_batches: validation batches decoded greedily for ``val/<metric>`` each epoch.
        num_samples: test samples printed and written to ``samples.txt``.
        optim: AdamW and schedule.
    """

    model: Seq2Seq  # built by build_model (or a composite's part: mmformer.tasks.composition)

    def __init__(
        self,
        source_tokenizer: Callable[[int], ModalityTokenizer],
        target_vocab_size: int | None = None,
        backbone: BackboneConfig | None = None,
        decoder: BackboneConfig | None = None,
        decoder_depth: int | None = None,
        target_positions: TextPositions = "learned",
        target_scale: bool = False,
        target_init_std: float | None = None,
        max_target_len: int = 256,
        tie_embeddings: bool = True,
        share_source_embedding: bool = False,
        label_smoothing: float = 0.1,
        ctc_weight: float = 0.0,
        metrics: list[str] | None = None,
        generation: GenerationConfig | None = None,
        val_generate_batches: int = 2,
        num_samples: int = 5,
        optim: OptimConfig | None = None,
    ) -> None:
        super().__init__()
        check_ctc_settings(ctc_weight, generation)
        self.ctc_weight, self.label_smoothing = ctc_weight, label_smoothing
        self.generation, self.optim = generation or GenerationConfig(), optim or OptimConfig()
        self.val_generate_batches, self.num_samples = val_generate_batches, num_samples
        self._metric_names = list(metrics) if metrics is not None else ["bleu", "chrf"]
        self.metrics = self.build_metrics(self._metric_names)
        self.ctc_metrics = text_metrics(self._metric_names) if ctc_weight > 0 else None
        self._source_vocab: SentencePieceVocab | None = None
        self._samples: list[tuple[str, str, str]] = []
        self._alignment_input: tuple[Any, list[int]] | None = None
        self._predict_names: Sequence[str] | None = None
        self.init_model(seq2seq_config(
            source_tokenizer, target_vocab_size, backbone, decoder, decoder_depth, target_positions, target_scale,
            target_init_std, max_target_len, tie_embeddings, share_source_embedding, ctc_weight))

    def on_model_built(self) -> None:
        self.vocab_size = self.model_config.target_vocab_size

    # ---- data ------------------------------------------------------------------------------
    def bind_data(self, spec: DataSpec, stage: str) -> None:
        self._predict_names = spec.predict_names
        vocab = spec.vocab
        if vocab is None or self.model is None:  # predict without a data vocabulary: the checkpoint's loads next
            self._source_vocab = spec.source_vocab
            return
        self.check_vocab(vocab, self.vocab_size, "target_vocab_size")
        self._vocab, self._source_vocab = vocab, spec.source_vocab
        self.bind_headline(spec, stage)

    # ---- training ----------------------------------------------------------------------------
    def forward(self, source: Any, target_in: Tensor) -> Tensor:
        return self.model(source, target_in)

    def on_before_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        """A batch the data marked ``pack_len`` gets its packing plans (source, target) here, on the host:
        the tokenizers' ``token_counts`` say how many tokens each sample becomes."""
        if isinstance(batch, dict) and PACK_KEY in batch:
            batch = dict(batch)
            budget = batch.pop(PACK_KEY)
            count = token_counter(self.model.source_tokenizer)
            target = self.model.target_tokenizer.token_counts(batch["target"]) - 1  # target[:, :-1] / [:, 1:]
            batch["packing"] = tuple(plan_packing([count(batch["source"]), target], budget))
        return batch

    def _losses(self, batch: Batch) -> tuple[Tensor, dict[str, Tensor], BackboneOutput]:
        """Loss, its parts and the memory; a batch with ``packing`` runs packed (its memory is packed rows,
        for the loss only: the tokens the loss averages over are the same, so is the loss)."""
        target = batch["target"]
        if target.dim() != 2 or target.shape[1] < 2:
            raise ValueError(f"target must be (B, T>=2) ids = bos + pieces + eos, got shape {tuple(target.shape)}")
        tgt_in, tgt_out = target[:, :-1], target[:, 1:]  # teacher forcing: predict token t+1 from tokens <= t
        src_plan, tgt_plan = batch.get("packing") or (None, None)
        memory = self.model.encode(batch["source"], packing=src_plan)
        logits = self.model.decode(tgt_in, memory, packing=tgt_plan).logits  # (B, T-1, V) or packed (R, L, V)
        labels = tgt_out if tgt_plan is None else tgt_plan.pack(tgt_out)  # row tails are PAD_ID: ignored
        ce = sequence_cross_entropy(logits, labels, self.label_smoothing, ignore_index=PAD_ID)
        parts = {"ce": ce}
        loss = ce
        if self.model.ctc_head is not None:
            ctc_logits, ctc_mask = self.model.ctc_logits(memory), memory.mask
            if src_plan is not None:  # CTC reads each utterance's frames: back to (B, L, V) rows
                ctc_logits = src_plan.unpack(ctc_logits, src_plan.width)
                ctc_mask = torch.arange(src_plan.width, device=target.device) < src_plan.length[:, None]
            parts["ctc"] = ctc_loss(ctc_logits, ctc_mask, tgt_out, blank=PAD_ID, special_ids=(EOS_ID, BOS_ID))
            loss = (1 - self.ctc_weight) * ce + self.ctc_weight * parts["ctc"]
        return loss, parts, memory

    def training_step(self, batch: Batch, batch_idx: int) -> Tensor:
        loss, parts, _ = self._losses(batch)
        bs = batch["target"].shape[0]
        self.log("train/loss", loss, prog_bar=True, batch_size=bs)
        if len(parts) > 1:
            self.log_dict({f"train/{k}": v for k, v in parts.items()}, batch_size=bs)
        return loss

    # ---- evaluation --------------------------------------------------------------------------
    def _generate(self, memory: BackboneOutput, cfg: GenerationConfig) -> list[list[int]]:
        """Decoded ids per row, eos and what follows cut."""
        return strip(generate(self.model, None, cfg, memory=memory))

    def validation_step(self, batch: Batch, batch_idx: int) -> None:
        loss, parts, memory = self._losses(batch)
        bs = batch["target"].shape[0]
        self.log("val/loss", loss, prog_bar=True, batch_size=bs, sync_dist=True)
        if batch_idx < self.val_generate_batches:
            self.update_val_metrics(self.vocab.decode(self._generate(memory, self.val_generation)),
                                    batch["target_text"])

    def on_validation_epoch_end(self) -> None:
        self.warn_if_headline_unfit()
        self.log_text_metrics("val", self.metrics["val"])

    def on_test_epoch_start(self) -> None:
        self._alignment_input = None

    def test_step(self, batch: Batch, batch_idx: int) -> None:
        loss, _, memory = self._losses(batch)
        self.log("test/loss", loss, batch_size=batch["target"].shape[0], sync_dist=True)
        ids = self._generate(memory, self.generation)
        if self._alignment_input is None:
            self._alignment_input = (batch["source"], ids[0])  # the first decoded sample, for the plot
        hyps = self.vocab.decode(ids)
        update(self.metrics["test"], hyps, batch["target_text"])
        if self.ctc_metrics is not None:
            update(self.ctc_metrics, self.ctc_transcribe(memory), batch["target_text"])
        room = max(0, self.num_samples - len(self._samples))  # only the rows kept as samples are formatted
        sources = [source_line(batch, i, self._source_vocab) for i in range(min(room, len(hyps)))]
        self._samples += list(zip(sources, batch["target_text"], hyps))

    def ctc_transcribe(self, memory: BackboneOutput) -> list[str]:
        """CTC greedy decoding of the encoder output (hidden ``(B, S, D)``) → strings."""
        return self.vocab.decode(ctc_greedy(self.model, memory))

    def on_test_epoch_end(self) -> None:
        self.log_text_metrics("test", self.metrics["test"])
        if self.ctc_metrics is not None:
            self.log_text_metrics("test", self.ctc_metrics, suffix="_ctc")
        log_dir = self.trainer.log_dir  # a collective under DDP
        if self.trainer.is_global_zero and log_dir is not None and self._alignment_input is not None:
            self._plot_alignment(Path(log_dir))
        if self.trainer.is_global_zero and self._samples:
            lines = [f"source: {s}\nreference: {r}\nhypothesis: {h}\n" for s, r, h in self._samples]
            print("\n" + "\n".join(lines))
            if log_dir is not None:
                Path(log_dir).mkdir(parents=True, exist_ok=True)
                (Path(log_dir) / "samples.txt").write_text("\n".join(lines))
            for logger in self.loggers:
                if hasattr(logger.experiment, "add_text"):
                    logger.experiment.add_text("test/samples", "\n\n".join(lines).replace("\n", "  \n"),
                                               global_step=self.global_step)
        self._samples = []

    @torch.no_grad()
    def _plot_alignment(self, folder: Path) -> None:
        """The last decoder layer's cross-attention (heads averaged) for the first test sample; over an
        image's patch grid, also one map per generated word."""
        from mmformer.viz import log_figure, plot_alignment, plot_word_attention

        source, hyp = self._alignment_input  # type: ignore[misc]
        memory = self.model.encode(source)
        ids = torch.tensor([[BOS_ID, *hyp]], device=memory.hidden.device)
        row = memory.mask[:1] if memory.mask is not None else None
        _, out = self.model.decode(ids, memory._replace(hidden=memory.hidden[:1], mask=row), need_weights=True)
        weights = out.cross_attentions[-1][0].mean(0)  # (T, S)
        tgt_labels = [self.vocab.id_to_piece(i) for i in ids[0].tolist()]
        if memory.grid is not None and isinstance(source, Tensor) and source.dim() == 4 and hyp:  # an image source
            gh, gw = memory.grid
            p = memory.num_prefix_tokens
            # row k (the query at ids[k]) is the step that generated piece k+1 = hyp[k]
            maps = weights[:-1, p : p + gh * gw].reshape(-1, gh, gw)  # (len(hyp), gh, gw)
            words = [w.replace("\u2581", " ").strip() or w for w in tgt_labels[1:13]]  # without the word-start mark
            fig = plot_word_attention(source[0], maps[:12], words, folder / "word_attention.png")
            log_figure(self.loggers, "test/word_attention", fig, self.global_step)
        n_src = int(row.sum()) if row is not None else weights.shape[1]
        weights = weights[:, :n_src]
        src_vocab = self._source_vocab
        if isinstance(source, Tensor) and source.dtype == torch.long and src_vocab is not None:
            src_labels = [src_vocab.id_to_piece(i) for i in source[0, :n_src].tolist()]
        else:  # a non-text source (audio frames, patches): positions
            src_labels = [str(i) if i % 5 == 0 else "" for i in range(n_src)]
        fig = plot_alignment(weights, src_labels, tgt_labels, folder / "cross_attention.png")
        log_figure(self.loggers, "test/cross_attention", fig, self.global_step)

    def predict_step(self, batch: Batch, batch_idx: int) -> list[str]:
        hyps = self.vocab.decode(self._generate(self.model.encode(batch["source"]), self.generation))
        ids = batch.get("id") or self.row_names(batch.get("index"), batch_idx, len(hyps))
        for id_, hyp in zip(ids, hyps):
            print(hyp, flush=True)
            self._predictions.append((str(id_), hyp))
        return hyps


def ctc_greedy(model: Seq2Seq, memory: BackboneOutput) -> list[list[int]]:
    """Best-path CTC decoding of a model's encoder output: label ids per row (blank = pad)."""
    lengths = memory.mask.sum(1) if memory.mask is not None else None
    return ctc_greedy_decode(model.ctc_logits(memory), lengths, blank=PAD_ID)

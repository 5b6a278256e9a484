"""CLIP-style contrastive training of a :class:`~mmformer.models.ContrastiveModel` between any two
towers ``a`` and ``b`` (image–text, audio–text...): global-batch InfoNCE, retrieval and zero-shot
evaluation."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any, Callable, ClassVar, Mapping, Sequence

import numpy as np
import torch
from torch import Tensor

from mmformer.backbone import BackboneConfig
from mmformer.data.spec import DataSpec, EvalSplit
from mmformer.heads import Pool
from mmformer.losses import clip_loss
from mmformer.models.legacy import RENAMED_ARGS
from mmformer.models.config import TokenizerSpec, contrastive_config
from mmformer.models.dual_encoder import ContrastiveModel, ContrastiveOutput
from mmformer.retrieval import gather_rows, retrieval_metrics, zeroshot_classifier
from mmformer.tasks.base import TaskModule
from mmformer.tasks.optim import OptimConfig, build_optimizer, epoch_steps
from mmformer.tokenizers.base import ModalityTokenizer
from mmformer.tokenizers.sentencepiece_vocab import SentencePieceVocab
from mmformer.tokenizers.text import TextTokenizer

OLD_KEYS = {"a": "image", "b": "text"}  # image–text batches may carry these keys for a and b


def tower_inputs(batch: Mapping[str, Any], role: str) -> Any:
    """The inputs of tower ``role`` (``a`` or ``b``) in a batch; a batch with the older keys
    ``image``/``text`` is read too."""
    if role in batch:
        return batch[role]
    if OLD_KEYS[role] in batch:
        return batch[OLD_KEYS[role]]
    raise KeyError(f"a contrastive batch needs the roles 'a' and 'b' (the two towers' inputs), got keys "
                   f"{sorted(batch)}; map the data's fields to the roles a/b")


def _initials(names: Sequence[str]) -> tuple[str, str]:
    if len(names) != 2 or not all(names) or names[0][0] == names[1][0]:
        raise ValueError(f"names must be two tower names with different first letters (metrics are named "
                         f"a2t, t2a... by them), got {list(names)}; e.g. names: [audio, text]")
    return names[0][0], names[1][0]


class ContrastiveTask(TaskModule):
    """CLIP training with a DDP-exact global-batch loss, retrieval and zero-shot evaluation.

    Batches are dicts with the roles ``a`` (first-tower inputs: images, an ``AudioBatch``...), ``b``
    (second-tower inputs, e.g. caption ids ``(B, T)``), ``index`` and, on labelled evaluation splits,
    ``labels (B, K)`` and ``split (B,)`` (see :mod:`mmformer.data.modules.captions`; the older keys
    ``image``/``text`` are read too). The data supplies, for a text tower b, the ``vocab`` and
    ``tokenize`` (prompts → ids, for zero-shot through tower b) and, for ``test``, what each test split
    measures (``eval_splits``, required there: a test run that measured nothing would pass silently;
    e.g. ``[EvalSplit("")]`` = retrieval over all test pairs). Metrics are named by the towers'
    initials from ``names``: with the default ``[image, text]``, ``test/t2i_r@k`` and ``test/i2t_r@k``
    (k = 1, 5, 10) over a split's pairs; with ``[audio, text]``, ``test/t2a_r@k`` and ``test/a2t_r@k``;
    and ``test/{prefix}zeroshot_{label}_acc`` from prompt-ensembled class embeddings of tower b. The
    test run also writes ``similarity_matrix.png`` (a batch's a–b similarities) beside the logs and
    to TensorBoard.

    ``predict`` classifies tower-a inputs zero-shot against ``predict_labels`` and writes
    ``predictions.csv`` (and, with ``predict_embeddings_dir``, ``{names[0]}_embeddings.npy`` /
    ``{names[1]}_embeddings.npy``).

    Args:
        tokenizer_a, tokenizer_b: build tower a's and tower b's tokenizer from the width,
            ``tokenizer(dim)``; any tokenizer stands in either (an ``ImagePatchTokenizer`` and a
            ``TextTokenizer`` make CLIP, an ``AudioTokenizer`` as tower a an audio–text model).
        backbone: tower a's encoder (and the shared one when ``shared_backbone``).
        shared_backbone: one encoder instance serves both towers. Give both tokenizers tokens of the
            same size (e.g. the text tokenizer's ``scale: true`` next to a conv-stem image tokenizer):
            otherwise the smaller stream's gradients dominate the shared blocks and the other tower
            barely trains (tasks/clip_shared.yaml).
        backbone_b: tower b's encoder when not shared (default: a copy of ``backbone``).
        pool_a, pool_b: ``cls``, ``mean`` or ``attention`` pooling of tower a and tower b.
        embed_dim: width of the joint embedding space.
        init_temperature: initial temperature (logit scale ``1/T``, learned; the parameter is kept at or below
            log 100 after each optimizer step).
        hard_negative_beta: > 0 trains with each row's negatives weighted by ``exp(beta * cosine)``
            (Robinson et al. 2021; :func:`mmformer.losses.hard_negative_cross_entropy`), so the towers cannot
            settle on a shortcut that leaves many negatives as close as the positive. 0 = plain InfoNCE.
            Validation loss is always the plain one.
        optim: AdamW and warm-up/cosine schedule.
        predict_labels: class names for ``mmformer predict``; None = the data's first zero-shot classes (and
            their templates), when it declares any.
        predict_templates: prompts for ``predict_labels`` (``{}`` = the label).
        predict_embeddings_dir: where ``predict`` writes embeddings as ``.npy`` (None = not written).
        heatmap_size: pairs shown in the similarity-matrix plot.
        names: the towers' names (a, then b); their first letters name the retrieval metrics.
    """

    required_data: ClassVar[tuple[str, ...]] = ("vocab", "tokenize")  # for a text tower b
    # image–text argument names → the tower ones (a config with the left one gets an error naming the
    # right one: see mmformer.cli.errors)
    renamed_args: ClassVar[dict[str, str]] = RENAMED_ARGS["ContrastiveTask"]

    def __init__(
        self,
        tokenizer_a: Callable[[int], ModalityTokenizer],
        tokenizer_b: Callable[[int], ModalityTokenizer],
        backbone: BackboneConfig | None = None,
        shared_backbone: bool = True,
        backbone_b: BackboneConfig | None = None,
        pool_a: Pool = "mean",
        pool_b: Pool = "mean",
        embed_dim: int = 128,
        init_temperature: float = 0.07,
        hard_negative_beta: float = 0.0,
        optim: OptimConfig | None = None,
        predict_labels: list[str] | None = None,
        predict_templates: list[str] | None = None,
        predict_embeddings_dir: str | None = None,
        heatmap_size: int = 12,
        names: list[str] | None = None,
    ) -> None:
        super().__init__()
        self.names = list(names) if names is not None else ["image", "text"]
        self.initials = _initials(self.names)
        if hard_negative_beta < 0:
            raise ValueError(f"hard_negative_beta must be >= 0 (0 = plain InfoNCE), got {hard_negative_beta}")
        self.hard_negative_beta = hard_negative_beta
        self.optim = optim or OptimConfig()
        self.predict_labels, self.predict_templates = predict_labels, predict_templates or ["{}"]
        self.predict_embeddings_dir, self.heatmap_size = predict_embeddings_dir, heatmap_size
        self._eval: dict[str, list[Tensor]] = {}
        self._heatmap: tuple[Tensor, Tensor] | None = None
        self._predicted: list[tuple[Tensor, Tensor]] = []
        self._vocab: SentencePieceVocab | None = None
        self._tokenize: Callable[[Sequence[str]], Tensor] | None = None
        self._eval_splits: Sequence[EvalSplit] = ()
        self._predict_names: Sequence[str] | None = None
        self.init_model(contrastive_config(tokenizer_a, tokenizer_b, backbone, shared_backbone, backbone_b,
                                           pool_a, pool_b, embed_dim, init_temperature))

    def forward(self, a: Any, b: Any) -> ContrastiveOutput:
        return self.model(a, b)

    # --- set-up -------------------------------------------------------------------------------
    def required_data_for(self, stage: str) -> tuple[str, ...]:
        """``vocab`` and ``tokenize`` when tower b is text (zero-shot prompts); ``eval_splits`` too for ``test``."""
        if self.model is not None:
            text_b = isinstance(self.model.tokenizer_b, TextTokenizer)
        else:  # not built yet (its vocabulary comes from the data): the config names the class
            tok = self.model_config.tokenizer_b
            text_b = isinstance(tok, TokenizerSpec) and issubclass(tok.resolve(), TextTokenizer)
        need = self.required_data if text_b else ()
        return (*need, "eval_splits") if stage == "test" else need

    def bind_data(self, spec: DataSpec, stage: str) -> None:
        want = spec.vocab.vocab_size if spec.vocab is not None else None
        text = self.model.tokenizer_b if self.model is not None else None
        have = text.vocab_size if isinstance(text, TextTokenizer) else None
        if have is not None and want is not None and want != have:
            raise ValueError(f"the text tokenizer's vocab_size is {have} but the data's caption vocabulary has {want} "
                             f"pieces; leave model.init_args.tokenizer_b.init_args.vocab_size out (it follows the data), or "
                             f"set it to {want}")
        self._vocab, self._tokenize = spec.vocab, spec.tokenize
        self._eval_splits = tuple(spec.eval_splits or ())
        if stage == "test" and not any(split.retrieval or split.zeroshot for split in self._eval_splits):
            raise ValueError(f"the data's eval_splits {[s.name for s in self._eval_splits]} measure nothing (no split "
                             f"has retrieval or zeroshot): its data_spec() must declare at least one, e.g. "
                             f"eval_splits=[EvalSplit('')] for retrieval over the test pairs")
        self._predict_names = spec.predict_names
        if not self.predict_labels:  # predict against the data's own zero-shot classes
            zeroshot = next((z for split in self._eval_splits for z in split.zeroshot.values()), None)
            if zeroshot is not None:
                self.predict_labels, self.predict_templates = list(zeroshot.classes), list(zeroshot.templates)

    def _prompts(self, texts: Sequence[str]) -> Tensor:
        if self._tokenize is None:
            raise RuntimeError(f"ContrastiveTask has no tokenizer for the prompts of tower b ({self.names[1]}): run it "
                               f"with a DataModule whose data_spec() provides tokenize")
        return self._tokenize(texts).to(self.device)

    # --- training -----------------------------------------------------------------------------
    def headline_metric(self) -> tuple[str, str] | None:
        """Validation R@1 of queries from the second tower (``val/t2i_r@1`` for image-text), as on the progress bar."""
        a, b = self.initials
        return f"val/{b}2{a}_r@1", "max"

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> Tensor:
        out = self(tower_inputs(batch, "a"), tower_inputs(batch, "b"))
        loss = clip_loss(out.embeds_a, out.embeds_b, out.logit_scale, hard_negative_beta=self.hard_negative_beta).loss
        bs = out.embeds_a.shape[0]
        self.log("train/loss", loss, prog_bar=True, batch_size=bs)
        self.log("train/logit_scale", out.logit_scale.detach(), batch_size=bs)
        return loss

    def on_train_batch_end(self, outputs: Any, batch: Any, batch_idx: int) -> None:
        super().on_train_batch_end(outputs, batch, batch_idx)
        self.model.clamp_logit_scale_()  # after the optimizer step, as open_clip: the parameter, not the forward

    # --- evaluation ---------------------------------------------------------------------------
    def _collect(self, batch: dict[str, Any]) -> ContrastiveOutput:
        out = self(tower_inputs(batch, "a"), tower_inputs(batch, "b"))
        for key, value in (("a", out.embeds_a.float()), ("b", out.embeds_b.float()),
                           ("labels", batch.get("labels")), ("split", batch.get("split"))):
            if value is not None:
                self._eval.setdefault(key, []).append(value)
        return out

    def _gathered(self) -> dict[str, Tensor]:
        """This epoch's evaluation rows from every rank: a/b ``(N, E)``, labels ``(N, K)``, split ``(N,)``."""
        out = {key: gather_rows(torch.cat(parts)) for key, parts in self._eval.items()}
        self._eval.clear()
        return out

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        out = self._collect(batch)
        loss = clip_loss(out.embeds_a, out.embeds_b, out.logit_scale, gather=False).loss
        self.log("val/loss", loss, batch_size=out.embeds_a.shape[0], sync_dist=True)

    def on_validation_epoch_end(self) -> None:
        rows = self._gathered()
        if rows:
            a, b = self.initials
            for name, value in retrieval_metrics(rows["a"], rows["b"], initials=self.initials).items():
                self.log(f"val/{name}", value, prog_bar=name == f"{b}2{a}_r@1", sync_dist=True)

    def test_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        out = self._collect(batch)
        if self._heatmap is None:
            n = out.embeds_a.shape[0]
            keep = batch["split"] == 0 if "split" in batch else torch.ones(n, dtype=torch.bool, device=self.device)
            a, b = out.embeds_a[keep][: self.heatmap_size], out.embeds_b[keep][: self.heatmap_size]
            if len(a) > 1:
                self._heatmap = ((b @ a.t()).float().cpu(), self._row_labels(tower_inputs(batch, "b"), keep))

    def _row_labels(self, b_inputs: Any, keep: Tensor) -> list[str]:
        """Names of the heatmap's rows: tower b's text when it is ids over the data's vocabulary, else row numbers."""
        rows = keep.nonzero()[:, 0][: self.heatmap_size].cpu()
        if isinstance(b_inputs, Tensor) and b_inputs.dtype == torch.long and self._vocab is not None:
            return self._vocab.decode(b_inputs.cpu()[rows])
        return [f"{self.names[1]} {i}" for i in rows.tolist()]

    @torch.no_grad()
    def _class_embeddings(self, classes: Sequence[str], templates: Sequence[str]) -> Tensor:
        return zeroshot_classifier(lambda p: self.model.encode_b(self._prompts(p), True), list(classes),
                                   list(templates))

    def on_test_epoch_end(self) -> None:
        from torchmetrics.functional.classification import multiclass_accuracy

        rows = self._gathered()
        splits = self._eval_splits
        split_of = rows.get("split", torch.zeros(len(rows.get("a", [])), dtype=torch.long))
        measured = 0
        for idx, split in enumerate(splits):
            sel = split_of == idx
            if not bool(sel.any()):
                continue
            metrics = (retrieval_metrics(rows["a"][sel], rows["b"][sel], initials=self.initials)
                       if split.retrieval else {})
            if split.zeroshot and "labels" not in rows:
                raise ValueError(f"eval split {split.name or '(main)'!r} measures zero-shot "
                                 f"{sorted(split.zeroshot)} but the test batches carry no 'labels' (B, K)")
            for name, spec in split.zeroshot.items():
                weights = self._class_embeddings(spec.classes, spec.templates)  # (C, E)
                preds = (rows["a"][sel] @ weights.t()).argmax(dim=-1)
                metrics[f"zeroshot_{name}_acc"] = multiclass_accuracy(
                    preds, rows["labels"][sel][:, spec.column], len(spec.classes), average="micro", ignore_index=-1)
            for name, value in metrics.items():
                self.log(f"test/{split.name}{name}", value, sync_dist=True)
            measured += len(metrics)
        if not measured:  # every rank sees the same gathered rows, so every rank raises
            found = sorted(set(split_of.tolist()))
            raise RuntimeError(f"{type(self).__name__} computed no test metric: the test batches hold "
                               f"{len(split_of)} rows with split indices {found[:10]}, but the data's eval_splits "
                               f"declare {len(splits)} split(s) {[s.name for s in splits]}; the test loader must "
                               f"yield rows whose 'split' column indexes eval_splits")
        log_dir = self.trainer.log_dir  # a collective under DDP: every rank asks
        if self.trainer.is_global_zero and log_dir is not None and self._heatmap is not None:
            self._plot_heatmap(Path(log_dir))
        self._heatmap = None

    def _plot_heatmap(self, folder: Path) -> None:
        import matplotlib.pyplot as plt

        from mmformer.viz import log_figure, plot_similarity

        sim, captions = self._heatmap  # type: ignore[misc]
        axes = ("image", "caption") if self.names == ["image", "text"] else (self.names[0], self.names[1])
        fig = plot_similarity(sim, captions, folder / "similarity_matrix.png", axes)
        log_figure(self.loggers, "test/similarity_matrix", fig, self.global_step)
        plt.close(fig)

    # --- prediction ---------------------------------------------------------------------------
    def predict_step(self, batch: dict[str, Any], batch_idx: int) -> dict[str, Tensor]:
        if not self.predict_labels:
            raise ValueError(f"set the labels to classify {self.names[0]} inputs against: "
                             f"--model.init_args.predict_labels='[circle,square]' (the data declares no zero-shot "
                             f"classes to use)")
        if not hasattr(self, "_label_embeds"):
            self._label_embeds = self._class_embeddings(list(self.predict_labels), list(self.predict_templates))
        embeds = self.model.encode_a(tower_inputs(batch, "a"), normalize=True)  # (B, E)
        probs = (self.model.scale() * embeds @ self._label_embeds.t()).softmax(dim=-1)
        self._predicted.append((batch["index"].cpu(), embeds.float().cpu()))
        conf, label = probs.max(dim=-1)
        return {"label": label, "prob": conf}

    def on_predict_epoch_end(self) -> None:
        if not self._predicted:
            return
        files = self._predict_names
        index = torch.cat([i for i, _ in self._predicted])
        embeds = torch.cat([e for _, e in self._predicted])  # (N, E) tower a
        labels = self._label_embeds.float().cpu()
        probs = (self.model.scale().detach().cpu() * embeds @ labels.t()).softmax(dim=-1)
        folder = Path(self.trainer.log_dir or self.trainer.default_root_dir)
        folder.mkdir(parents=True, exist_ok=True)
        names = list(self.predict_labels or [])
        with open(folder / "predictions.csv", "w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(["id", "label", "probability"])
            for i, p in zip(index.tolist(), probs):
                c = int(p.argmax())
                row = [files[i] if files else str(i), names[c], f"{float(p[c]):.4f}"]
                writer.writerow(row)
                print("\t".join(row))
        print(f"wrote {len(index)} zero-shot predictions to {folder / 'predictions.csv'}")
        if self.predict_embeddings_dir is not None:
            out = Path(self.predict_embeddings_dir)
            out.mkdir(parents=True, exist_ok=True)
            a, b = self.names
            np.save(out / f"{a}_embeddings.npy", embeds.numpy())
            np.save(out / f"{b}_embeddings.npy", labels.numpy())
            (out / f"{b}_labels.txt").write_text("\n".join(names) + "\n")
            print(f"wrote {a}_embeddings.npy {tuple(embeds.shape)} and {b}_embeddings.npy {tuple(labels.shape)} "
                  f"to {out}")
        self._predicted = []
        del self._label_embeds

    def configure_optimizers(self) -> dict:
        return build_optimizer(self.model, self.optim, self.trainer.estimated_stepping_batches,
                               epoch_steps(self.trainer))

"""Classification of any modality: a :class:`~mmformer.models.Classifier` trained with cross-entropy."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any, Callable, ClassVar, Mapping, Sequence

import torch.nn.functional as F
from torch import Tensor, nn
from torchmetrics.classification import MulticlassAccuracy, MulticlassConfusionMatrix

from mmformer.backbone import BackboneConfig
from mmformer.data.spec import DataSpec
from mmformer.heads import Pool
from mmformer.losses import soft_target_cross_entropy
from mmformer.models.classifier import Classifier
from mmformer.models.config import classifier_config
from mmformer.tasks.base import TaskModule
from mmformer.tasks.optim import OptimConfig, build_optimizer, epoch_steps
from mmformer.tokenizers.base import ModalityTokenizer
from mmformer.tokenizers.text import TextTokenizer


def split_batch(batch: Any, second: str = "label") -> tuple[Any, Any]:
    """A classification batch → ``(inputs, labels)`` (``second="index"``: ``(inputs, row ids)`` to predict).

    Batches are dicts keyed by role: ``input`` (whatever the tokenizer takes: images ``(B, C, H, W)``,
    ids ``(B, T)``, an ``AudioBatch``...), ``label`` ``(B,)`` long and ``index`` ``(B,)`` long. A 2-tuple
    ``(inputs, labels)`` (``(inputs, ids)`` in predict) from a plain user DataModule is read the same
    way. The second item is None when the batch lacks it (predict over bare inputs).
    """
    if isinstance(batch, Mapping):
        if "input" not in batch or (second == "label" and "label" not in batch):
            raise KeyError(f"a classification batch needs the roles 'input' and 'label' ('input' to predict), got "
                           f"keys {sorted(batch)}; map the data's fields to these roles")
        return batch["input"], batch.get(second)
    if isinstance(batch, (tuple, list)) and len(batch) == 2:
        return batch[0], batch[1]
    if second == "label":
        raise TypeError(f"a classification batch is a dict with 'input' and 'label' (or a tuple (inputs, labels)), "
                        f"got {type(batch).__name__}")
    return batch, None


def _is_image(x: Any) -> bool:
    return isinstance(x, Tensor) and x.dim() == 4 and x.is_floating_point()


class ClassificationTask(TaskModule):
    """Cross-entropy classification over any tokenizer (image, audio, text or a plug-in).

    Batches are dicts with the roles ``input`` (what the tokenizer takes), ``label`` ``(B,)`` long
    and ``index`` ``(B,)``; a plain ``(inputs, labels)`` tuple works too (see :func:`split_batch`).
    At test time it writes a confusion matrix and, for images through a patch tokenizer,
    attention-rollout overlays of a few test images (PNG beside the logs, and to TensorBoard).
    ``predict`` batches carry ``input`` and ``index`` (named by the data's ``predict_names``), or are
    ``(inputs, ids)``; the predictions go to ``predictions.csv`` in the run's log folder.

    Data: uses ``class_names`` when declared (their count must equal ``num_classes``) and
    ``predict_names``.

    Args:
        tokenizer: builds the tokenizer from the backbone width, ``tokenizer(dim)``; in YAML a
            ``class_path`` with ``init_args`` minus ``dim``.
        num_classes: number of classes C; None = the data's (``class_names``), set in one place.
        backbone: encoder sizes and layer choices.
        pool: ``cls``, ``mean`` or ``attention`` pooling.
        head_dropout: dropout before the classifier.
        label_smoothing: cross-entropy label smoothing.
        mixup, cutmix: alphas of timm's Mixup/CutMix in training (0 = off; an odd-sized last batch is left
            unmixed); image inputs only.
        optim: AdamW and warm-up/cosine schedule settings.
        class_names: names for plots and predictions (default: the data's ``class_names``).
        num_overlays: test images drawn with attention overlays.
        compile_backbone: ``torch.compile`` the backbone in place (state_dict keys unchanged, so
            checkpoints move freely between compiled and eager runs).
    """

    required_data: ClassVar[tuple[str, ...]] = ()  # class_names are used when the data declares them
    model: Classifier  # built by build_model (or a composite's part: mmformer.tasks.composition)

    def __init__(
        self,
        tokenizer: Callable[[int], ModalityTokenizer],
        num_classes: int | None = None,
        backbone: BackboneConfig | None = None,
        pool: Pool = "mean",
        head_dropout: float = 0.0,
        label_smoothing: float = 0.0,
        mixup: float = 0.0,
        cutmix: float = 0.0,
        optim: OptimConfig | None = None,
        class_names: list[str] | None = None,
        num_overlays: int = 8,
        compile_backbone: bool = False,
    ) -> None:
        super().__init__()
        backbone = backbone or BackboneConfig()
        self.optim, self.label_smoothing = optim or OptimConfig(), label_smoothing
        self.class_names, self.num_overlays = class_names, num_overlays
        self._mix, self._compile = (mixup, cutmix), compile_backbone
        self._overlay_inputs: Tensor | None = None
        self._predictions: list[tuple[str, int, float]] = []
        self._predict_names: Sequence[str] | None = None
        self.init_model(classifier_config(tokenizer, num_classes, backbone, pool, head_dropout))

    def on_model_built(self) -> None:
        num_classes = self.num_classes = self.model_config.num_classes
        if self.class_names is not None and len(self.class_names) != num_classes:
            raise ValueError(f"class_names has {len(self.class_names)} names but num_classes={num_classes}")
        if self._compile:
            self.model.backbone.compile()
        mixup, cutmix = self._mix
        self.mixup = None
        if mixup > 0 or cutmix > 0:
            from timm.data import Mixup

            self.mixup = Mixup(mixup_alpha=mixup, cutmix_alpha=cutmix, label_smoothing=self.label_smoothing,
                               num_classes=num_classes)
        self.topk = min(5, num_classes)
        self.metrics = nn.ModuleDict({f"{s}_acc": MulticlassAccuracy(num_classes, average="micro")
                                      for s in ("train", "val", "test")})
        self.metrics["test_topk"] = MulticlassAccuracy(num_classes, top_k=self.topk, average="micro")
        self.confusion = MulticlassConfusionMatrix(num_classes)

    def forward(self, inputs: Any) -> Tensor:
        return self.model(inputs)

    def bind_data(self, spec: DataSpec, stage: str) -> None:
        self._predict_names = spec.predict_names
        if self.model is None:  # predict over bare inputs: the checkpoint sizes the model
            return
        tokenizer = self.model.tokenizer
        if spec.vocab is not None and isinstance(tokenizer, TextTokenizer) and \
                spec.vocab.vocab_size != tokenizer.vocab_size:  # else: an index error at the first step
            raise ValueError(f"the data's sentencepiece vocabulary has {spec.vocab.vocab_size} pieces but the text "
                             f"tokenizer was built for vocab_size={tokenizer.vocab_size}; leave the tokenizer's "
                             f"vocab_size out of the model section (it follows the data), or set it to "
                             f"{spec.vocab.vocab_size}")
        if spec.class_names is None:  # data without names: plots and predictions show class ids
            return
        names = list(spec.class_names)
        if len(names) != self.num_classes:
            raise ValueError(f"the data has {len(names)} classes but the model was built for num_classes="
                             f"{self.num_classes}; leave model.init_args.num_classes out (it follows the data), or "
                             f"set it to {len(names)}")
        if self.class_names is None:
            self.class_names = names

    def _names(self) -> list[str]:
        names = self.class_names
        return list(names) if names else [str(i) for i in range(self.num_classes)]

    def headline_metric(self) -> tuple[str, str] | None:
        """Validation accuracy, the best checkpoint's criterion."""
        return "val/acc", "max"

    def training_step(self, batch: Any, batch_idx: int) -> Tensor:
        inputs, labels = split_batch(batch)
        if self.mixup is not None and not _is_image(inputs):
            raise ValueError(f"mixup/cutmix mix images (B, C, H, W) float, but the inputs are "
                             f"{_describe(inputs)}; set model.init_args.mixup and cutmix to 0 for this data")
        if self.mixup is not None and labels.shape[0] % 2 == 0:  # timm's batch mixup needs pairs
            inputs, soft = self.mixup(inputs, labels)
            logits = self(inputs)
            loss = soft_target_cross_entropy(logits, soft)
        else:
            logits = self(inputs)
            loss = F.cross_entropy(logits, labels, label_smoothing=self.label_smoothing)
        self.metrics["train_acc"](logits, labels)
        self.log("train/loss", loss, prog_bar=True, batch_size=labels.shape[0])
        self.log("train/acc", self.metrics["train_acc"], prog_bar=True, batch_size=labels.shape[0])
        return loss

    def _eval_step(self, inputs: Any, labels: Tensor, stage: str) -> Tensor:
        logits = self(inputs)
        bs = labels.shape[0]
        self.metrics[f"{stage}_acc"](logits, labels)
        self.log(f"{stage}/loss", F.cross_entropy(logits, labels), batch_size=bs, sync_dist=True)
        self.log(f"{stage}/acc", self.metrics[f"{stage}_acc"], prog_bar=True, batch_size=bs)
        return logits

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        self._eval_step(*split_batch(batch), "val")

    def test_step(self, batch: Any, batch_idx: int) -> None:
        inputs, labels = split_batch(batch)
        logits = self._eval_step(inputs, labels, "test")
        self.metrics["test_topk"](logits, labels)
        self.log(f"test/acc_top{self.topk}", self.metrics["test_topk"], batch_size=labels.shape[0])
        self.confusion.update(logits, labels)
        if batch_idx == 0 and _is_image(inputs):  # attention overlays are drawn over images only
            self._overlay_inputs = inputs[: self.num_overlays]

    def on_test_epoch_end(self) -> None:
        matrix = self.confusion.compute()  # synced across processes
        self.confusion.reset()
        log_dir = self.trainer.log_dir  # a collective under DDP: every rank must ask
        if self.trainer.is_global_zero and log_dir is not None:
            self._write_test_plots(matrix, Path(log_dir))

    def _write_test_plots(self, matrix: Tensor, folder: Path) -> None:
        from mmformer.viz import log_figure, patch_saliency, plot_attention_overlays, save_figure

        names = self._names()
        fig, _ = self.confusion.plot(val=matrix, labels=names)
        fig.set_size_inches(1.0 + 0.6 * len(names), 1.0 + 0.6 * len(names))
        save_figure(fig, folder / "confusion_matrix.png")
        log_figure(self.loggers, "test/confusion_matrix", fig, self.global_step)
        images = self._overlay_inputs
        if images is None:
            return
        out, batch = self.model.forward_features(images, need_weights=True)
        if batch.grid is None or out.attentions is None:
            return  # not a patch tokenizer: no spatial map to draw
        pred = self.model.forward_head(out, batch).softmax(-1).max(-1)
        titles = [f"{names[int(c)]} {p:.2f}" for p, c in zip(pred.values.tolist(), pred.indices.tolist())]
        saliency = patch_saliency(out.attentions, batch.grid, batch.num_prefix_tokens)
        fig = plot_attention_overlays(images, saliency, titles, folder / "attention_overlays.png")
        log_figure(self.loggers, "test/attention_overlays", fig, self.global_step)

    def predict_step(self, batch: Any, batch_idx: int) -> dict[str, Tensor]:
        inputs, ids = split_batch(batch, "index")
        probs = self(inputs).softmax(dim=-1)
        conf, label = probs.max(dim=-1)
        if ids is not None:
            self._predictions += zip(self._ids(ids), label.tolist(), conf.tolist())
        return {"label": label, "prob": conf}

    def _ids(self, ids: Any) -> list[str]:
        """A predict batch's ids as strings: row indices name the data's ``predict_names`` when it has them."""
        if isinstance(ids, Tensor):
            rows = ids.tolist()
            names = self._predict_names
            return [str(names[i]) for i in rows] if names is not None else [str(i) for i in rows]
        return [str(i) for i in ids]

    def on_predict_epoch_end(self) -> None:
        if not self._predictions:
            return
        names = self._names()
        folder = Path(self.trainer.log_dir or self.trainer.default_root_dir)
        folder.mkdir(parents=True, exist_ok=True)
        with open(folder / "predictions.csv", "w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(["id", "label", "class", "probability"])
            for id_, label, prob in self._predictions:
                writer.writerow([id_, label, names[label], f"{prob:.4f}"])
                print(f"{id_}\t{names[label]}\t{prob:.4f}")
        print(f"wrote {len(self._predictions)} predictions to {folder / 'predictions.csv'}")
        self._predictions = []

    def configure_optimizers(self) -> dict:
        return build_optimizer(self.model, self.optim, self.trainer.estimated_stepping_batches,
                               epoch_steps(self.trainer))


def _describe(x: Any) -> str:
    if isinstance(x, Tensor):
        return f"a {x.dtype} tensor of shape {tuple(x.shape)}"
    return type(x).__name__

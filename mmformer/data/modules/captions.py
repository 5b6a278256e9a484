"""Image–caption DataModules for contrastive training: the rendered shapes images of an embedded builder
(:class:`ShapesCaptionData`) and CSV/TSV tables (:class:`CsvCaptionData`, a :class:`ManifestData` configuration).

:class:`ShapesCaptionData`'s batches are dicts keyed by the contrastive task's roles: ``a`` (images
``(B, C, H, W)`` float normalized), ``b`` (captions ``(B, T)`` long right-padded ids, pad 0, eos 3), ``index (B,)``
long row numbers, and ``labels (B, K)`` long (-1 = none). Captions are tokenized once at ``setup`` (a sentencepiece
model trained on the training captions, cached by fingerprint), so a batch is a few tensor gathers.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from mmformer.data.common.embedded import Builder, build_embedded
from mmformer.data.common.loading import eval_loader
from mmformer.data.common.sampling import ResumableDataModule
from mmformer.data.modules.manifest import ManifestData
from mmformer.data.readers.image_files import list_images, load_image
from mmformer.data.spec import DataSpec, EvalSplit, ProvidesDataSpec, ZeroShotSpec
from mmformer.tokenizers.sentencepiece_vocab import SentencePieceVocab


class CaptionDataset(Dataset):
    """Images (uint8 tensor in memory, or file paths decoded lazily) with pre-tokenized captions.

    Index ``v >= N`` reads row ``v % N`` (the virtual indices of :class:`ResumableSampler`).
    Batched fetching (``__getitems__``) gathers a whole batch with tensor indexing.

    Args:
        images: ``(N, C, H, W)`` uint8, or N image paths (decoded with :func:`load_image`, named in its errors).
        ids: ``(N, T)`` long right-padded caption ids.
        mean, std: per-channel normalization of ``[0, 1]`` pixels.
        labels: ``(N, K)`` long zero-shot labels (-1 = none), or None.
        image_size, channels: decoding size for image paths.
        groups: ``(N,)`` long evaluation-split index of each sample (batches carry it as ``split``).
    """

    def __init__(self, images: Tensor | Sequence[str], ids: Tensor, mean: Sequence[float], std: Sequence[float],
                 labels: Tensor | None = None, image_size: int = 0, channels: int = 3,
                 groups: Tensor | None = None) -> None:
        if len(images) != ids.shape[0]:
            raise ValueError(f"{len(images)} images but {ids.shape[0]} captions")
        self.images, self.ids, self.labels, self.groups = images, ids, labels, groups
        self.lengths = (ids != 0).sum(dim=1)  # (N,)
        self.mean = torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1)
        self.std = torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1)
        self.image_size, self.channels = image_size, channels

    def __len__(self) -> int:
        return self.ids.shape[0]

    def _images(self, idx: Tensor) -> Tensor:  # (B, C, H, W) uint8
        if isinstance(self.images, Tensor):
            return self.images[idx]
        return torch.stack([load_image(self.images[i], self.channels, self.image_size) for i in idx.tolist()])

    def __getitems__(self, indices: Sequence[int]) -> dict[str, Tensor]:
        idx = torch.as_tensor(indices, dtype=torch.long) % len(self)
        width = int(self.lengths[idx].max().clamp_min(1))
        batch = {
            "a": (self._images(idx).float().div_(255) - self.mean) / self.std,  # tower a: images
            "b": self.ids[idx, :width],  # tower b: caption ids
            "index": idx,
        }
        if self.labels is not None:
            batch["labels"] = self.labels[idx]
        if self.groups is not None:
            batch["split"] = self.groups[idx]
        return batch

    def __getitem__(self, i: int) -> dict[str, Tensor]:
        return {k: v[0] for k, v in self.__getitems__([i]).items()}


def concat_splits(parts: Sequence[CaptionDataset]) -> CaptionDataset:
    """One dataset over several in-memory evaluation splits; batches carry each sample's split index as ``split``.

    One loader (rather than one per split) keeps ``mmformer test``'s metrics in one table column.
    """
    first = parts[0]
    width = max(p.ids.shape[1] for p in parts)
    ids = torch.cat([F.pad(p.ids, (0, width - p.ids.shape[1])) for p in parts])
    k = max((p.labels.shape[1] for p in parts if p.labels is not None), default=0)
    labels = torch.cat([p.labels if p.labels is not None else torch.full((len(p), k), -1) for p in parts])
    groups = torch.cat([torch.full((len(p),), i, dtype=torch.long) for i, p in enumerate(parts)])
    images = torch.cat([p.images for p in parts])  # type: ignore[misc]
    return CaptionDataset(images, ids, first.mean.flatten().tolist(), first.std.flatten().tolist(),
                          labels if k else None, first.image_size, first.channels, groups)


def _identity(batch: dict[str, Tensor]) -> dict[str, Tensor]:
    return batch  # __getitems__ already built the batch


# --- an embedded builder's scenes ---------------------------------------------------------------------------
SHAPE_TEMPLATES = ["a {}", "a small {}", "a large {}"]
COLOR_TEMPLATES = ["a {} shape", "a small {} shape", "a large {} shape"]
EVAL_SPLITS = ("test", "zeroshot", "unseen")


class ShapesCaptionData(ResumableDataModule, ProvidesDataSpec):
    """Images with captions and zero-shot labels from an embedded builder (the contrastive recipe's, the
    rendered shape scenes of ``corpora.shapes.ShapesCorpus``); exact mid-epoch resume.

    The builder returns a folder per split (``train``, ``val``, ``test``, ``zeroshot``, ``unseen``), each with
    ``images.npy`` (``(N, H, W, 3)`` uint8), ``captions.txt`` (one a line) and ``labels.npy`` (``(N, K)`` class
    ids, -1 = none), and ``label_classes`` (label column name → class names, in column order). ``test`` runs
    three splits: ``test`` (retrieval over unique captions), ``zeroshot`` (zero-shot accuracy per label column)
    and ``unseen`` (the same on held-out combinations), metric prefixes "", "" and "unseen_". Images are
    normalized by the training images' per-channel statistics.

    Args:
        embedded: the builder (:mod:`mmformer.data.common.embedded`).
        data_dir: where the builder caches the scenes.
        image_size: side of the builder's square images (checked).
        shape_templates, color_templates: zero-shot prompts (``{}`` = class name) of the ``color`` column and of
            the others; each class's embedding is the mean of its prompts'.
        predict_dir: folder of images for ``mmformer predict`` (default: the test split's images).
        batch_size: per-process batch size (the contrastive batch is this times the world size).
        vocab_size: pieces of the caption sentencepiece model (the text tokenizer follows it); None = the size
            the vocabulary rule gives the training captions (:mod:`mmformer.tokenizers.vocab_rules`).
        vocab_model_type: sentencepiece algorithm for captions (``bpe``, ``unigram``, ``word``).
        max_caption_len: longest caption in ids (eos included); longer ones are cut.
        num_workers: DataLoader worker processes.
        seed: shuffling seed.
    """

    # options of earlier versions: a run's old config.yaml names its new place (cli/errors.py)
    renamed_args: ClassVar[dict[str, str]] = {k: f"embedded.init_args.{k}" for k in (
        "num_train", "num_eval", "two_shape_fraction", "partial_captions")}
    channels = 3

    def __init__(self, embedded: Builder | str, data_dir: str = "data", image_size: int = 48,
                 shape_templates: list[str] | None = None, color_templates: list[str] | None = None,
                 predict_dir: str | None = None, batch_size: int = 256, vocab_size: int | None = None,
                 vocab_model_type: str = "bpe", max_caption_len: int = 48, num_workers: int = 0,
                 seed: int = 0) -> None:
        super().__init__()
        self.embedded, self.data_dir, self.image_size = embedded, Path(data_dir), image_size
        self.predict_dir = predict_dir
        self.shape_templates = shape_templates or SHAPE_TEMPLATES
        self.color_templates = color_templates or COLOR_TEMPLATES
        self.batch_size, self.vocab_size, self.vocab_model_type = batch_size, vocab_size, vocab_model_type
        self.max_caption_len, self.num_workers, self.seed = max_caption_len, num_workers, seed
        self.mean: list[float] = [0.5] * self.channels
        self.std: list[float] = [0.5] * self.channels
        self.vocab: SentencePieceVocab | None = None
        self._test_info: list[EvalSplit] = []
        self._built: dict[str, Any] | None = None  # what the builder returned
        self._cache: dict[str, tuple] = {}

    # --- the builder's splits ------------------------------------------------------------------------
    def _splits(self) -> dict[str, Any]:
        if self._built is None:  # renders once; the builder caches the scenes
            self._built = build_embedded(self.embedded, self.data_dir, ("train", "val", *EVAL_SPLITS, "label_classes"))
        return self._built

    def load_raw(self, split: str) -> tuple[Tensor, list[str], Tensor]:
        """``split`` → ``(images (N, C, H, W) uint8, captions, labels (N, K))``."""
        if split not in self._cache:
            path = Path(self._splits()[split])
            images = np.load(path / "images.npy")  # (N, H, W, 3) uint8
            if images.shape[1] != self.image_size:
                raise ValueError(f"{path}: the builder's images are {images.shape[1]} px, not data.init_args."
                                 f"image_size={self.image_size}; set them equal")
            captions = (path / "captions.txt").read_text().splitlines()
            self._cache[split] = (torch.from_numpy(images).permute(0, 3, 1, 2).contiguous(), captions,
                                  torch.from_numpy(np.load(path / "labels.npy")))
        return self._cache[split]

    def split_info(self, split: str) -> EvalSplit:
        """What the task measures on test split ``split``: retrieval on ``test``, zero-shot on the others."""
        if split == "test":
            return EvalSplit("", retrieval=True)
        classes: dict[str, list[str]] = self._splits()["label_classes"]
        specs = {name: ZeroShotSpec(k, list(names), self.color_templates if name == "color" else self.shape_templates)
                 for k, (name, names) in enumerate(classes.items())}
        return EvalSplit("unseen_" if split == "unseen" else "", retrieval=False, zeroshot=specs)

    # --- vocabulary and datasets ---------------------------------------------------------------------
    def prepare_data(self) -> None:
        self._train_vocab(self.load_raw("train")[1])

    def _train_vocab(self, captions: list[str]) -> SentencePieceVocab:
        prefix = Path(self._splits()["train"]).parent / "captions_sp"
        vocab = SentencePieceVocab.train(captions, prefix, self.vocab_size,  # type: ignore[arg-type]
                                         model_type=self.vocab_model_type, byte_fallback=False)
        if self.vocab_size is not None and vocab.vocab_size != self.vocab_size:
            raise ValueError(f"the caption vocabulary has {vocab.vocab_size} pieces, not vocab_size={self.vocab_size}")
        return vocab

    def tokenize(self, texts: Sequence[str]) -> Tensor:
        """Strings → right-padded ids ``(B, T)`` with eos, as the captions are (call ``setup`` first)."""
        if self.vocab is None:
            raise RuntimeError("the caption vocabulary is not loaded yet: call setup() first")
        return self.vocab.batch(list(texts), bos=False, eos=True, max_len=self.max_caption_len)

    def _dataset(self, split: str) -> CaptionDataset:
        images, captions, labels = self.load_raw(split)
        return CaptionDataset(images, self.tokenize(captions), self.mean, self.std, labels, self.image_size,
                              self.channels)

    def setup(self, stage: str | None = None) -> None:
        self._stage = stage
        if getattr(self, "_ready", False):
            return
        images, captions, _ = self.load_raw("train")
        self.vocab = self._train_vocab(captions)  # reuses the cached model: the fingerprint matches
        stats = images[:10000].float().div(255)  # normalization statistics from training images only
        self.mean = stats.mean(dim=(0, 2, 3)).tolist()
        self.std = stats.std(dim=(0, 2, 3)).clamp_min(1e-3).tolist()
        self.train_set, self.val_set = self._dataset("train"), self._dataset("val")
        self._test_parts = [self._dataset(s) for s in EVAL_SPLITS]  # in the order of the spec's eval_splits
        self._test_info = [self.split_info(s) for s in EVAL_SPLITS]
        self.test_set = concat_splits(self._test_parts)
        self._ready = True

    # --- loaders -------------------------------------------------------------------------------------
    def _eval_loader(self, ds: Dataset) -> DataLoader:
        return eval_loader(ds, self.batch_size, self.trainer, self.num_workers, collate_fn=_identity)

    def train_dataloader(self) -> DataLoader:
        # drop_last: every contrastive batch is full, and equal across ranks for the gather
        return self._shuffled_loader(self.train_set, collate_fn=_identity, drop_last=True)

    def val_dataloader(self) -> DataLoader:
        return self._eval_loader(self.val_set)

    def test_dataloader(self) -> DataLoader:
        """All evaluation splits in one loader (batches carry ``split``, the index into the spec's ``eval_splits``)."""
        return self._eval_loader(self.test_set)

    def _predict_files(self) -> list[str]:
        assert self.predict_dir is not None
        files = list_images(self.predict_dir)
        if not files:
            raise ValueError(f"no image files in {self.predict_dir}")
        return [str(f) for f in files]

    def predict_dataloader(self) -> DataLoader:
        """Images of ``predict_dir`` when it is set, else the main test split."""
        if self.predict_dir is None:
            return self._eval_loader(self._test_parts[0])
        files = self._predict_files()
        return self._eval_loader(CaptionDataset(files, torch.zeros(len(files), 1, dtype=torch.long), self.mean,
                                                self.std, None, self.image_size, self.channels))

    # --- what a task must match -----------------------------------------------------------------
    def data_spec(self) -> DataSpec:
        """``vocab``, ``tokenize`` (prompts → ids like the captions), ``eval_splits`` (in the order of the
        test batches' ``split`` column) and, after ``setup("predict")`` with ``predict_dir``, ``predict_names``."""
        predicting = self.predict_dir is not None and getattr(self, "_stage", None) == "predict"
        return DataSpec(vocab=self.vocab, tokenize=self.tokenize, eval_splits=list(self._test_info),
                        predict_names=self._predict_files() if predicting else None)


class CsvCaptionData(ManifestData):
    """Image–caption pairs from CSV/TSV tables with a header row (OpenCLIP's ``--csv-img-key/--csv-caption-key``
    format): a :class:`ManifestData` whose image field ``image_column`` is tower ``a`` and text field
    ``caption_column`` tower ``b``, with full training batches (``drop_last``).

    Args:
        train, val, test: ``.csv``/``.tsv`` tables (the suffix picks the separator); ``test`` defaults to ``val``.
            Image paths resolve against the table's folder.
        image_column, caption_column: the columns of image paths and of captions.
        predict: a table of the images ``mmformer predict`` embeds (its caption column may be missing).
        image_size, channels: the images the model sees; max_caption_len: longest caption in ids (eos included).
        shards: read ``<shards>/{train,val,test}`` prepared by ``mmformer prepare manifest``.
        data_dir, batch_size, vocab_size, vocab_model_type, num_workers, seed: see :class:`ManifestData`.
    """

    renamed_args: ClassVar[dict[str, str]] = {"train_file": "train", "val_file": "val", "test_file": "test",
                                              "predict_dir": "predict (a table of image files)"}

    def __init__(self, train: str | None = None, val: str | None = None, test: str | None = None,
                 image_column: str = "filepath", caption_column: str = "title", predict: str | None = None,
                 data_dir: str = "data", image_size: int = 64, channels: int = 3, batch_size: int = 128,
                 vocab_size: int | None = None, vocab_model_type: str = "bpe", max_caption_len: int = 64,
                 num_workers: int = 0, seed: int = 0, shards: str | None = None) -> None:
        if (shards is None) == (train is None or val is None):
            raise ValueError("set data.init_args.train and val (caption tables), or data.init_args.shards")
        fields = {image_column: {"type": "image", "size": image_size, "channels": channels},
                  caption_column: {"type": "text", "max_len": max_caption_len}}
        super().__init__(fields, {"a": image_column, "b": caption_column}, train, val, test or val, predict,
                         data_dir=data_dir, vocab_size=vocab_size,
                         vocab_model_type=vocab_model_type,  # type: ignore[arg-type]
                         batch_size=batch_size, drop_last=True, num_workers=num_workers, seed=seed, shards=shards)

"""Image–caption DataModules for contrastive training: the dataset, the shared machinery
(:class:`CaptionDataModule`), CSV/TSV tables (:class:`CsvCaptionData`) and the rendered shapes
images of an embedded builder (:class:`ShapesCaptionData`).

Batches are dicts keyed by the contrastive task's roles: ``a`` (images ``(B, C, H, W)`` float
normalized), ``b`` (captions ``(B, T)`` long right-padded ids, pad 0, eos 3), ``index (B,)`` long row
numbers, and ``labels (B, K)`` long (-1 = none) for splits that carry zero-shot labels. Captions are tokenized once at ``setup`` (a sentencepiece model
trained on the training captions, cached by fingerprint), so a batch is a few tensor gathers.
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
from mmformer.data.common.loading import eval_loader, world_of
from mmformer.data.common.sampling import ResumableDataModule, ResumableSampler
from mmformer.data.readers.blob import Blob
from mmformer.data.readers.caption_table import read_caption_table
from mmformer.data.readers.image_files import list_images, load_image
from mmformer.data.shards.reading import has_split, read_columns, shard_files, split_view
from mmformer.data.spec import DataSpec, EvalSplit, ProvidesDataSpec, ZeroShotSpec
from mmformer.tokenizers.sentencepiece_vocab import SentencePieceVocab


class CaptionDataset(Dataset):
    """Images (uint8 tensor in memory, or file paths decoded lazily) with pre-tokenized captions.

    Index ``v >= N`` reads row ``v % N`` (the virtual indices of :class:`ResumableSampler`).
    Batched fetching (``__getitems__``) gathers a whole batch with tensor indexing.

    Args:
        images: ``(N, C, H, W)`` uint8, or N image paths or files inside shards (decoded with :func:`load_image`).
        ids: ``(N, T)`` long right-padded caption ids.
        mean, std: per-channel normalization of ``[0, 1]`` pixels.
        labels: ``(N, K)`` long zero-shot labels (-1 = none), or None.
        image_size, channels: decoding size for image paths.
        rows: the source row of each sample (named in decoding errors).
        groups: ``(N,)`` long evaluation-split index of each sample (batches carry it as ``split``).
    """

    def __init__(self, images: Tensor | Sequence[str | Path | Blob], ids: Tensor, mean: Sequence[float],
                 std: Sequence[float], labels: Tensor | None = None, image_size: int = 0, channels: int = 3,
                 rows: Sequence[str] | None = None, groups: Tensor | None = None) -> None:
        if len(images) != ids.shape[0]:
            raise ValueError(f"{len(images)} images but {ids.shape[0]} captions")
        self.images, self.ids, self.labels, self.groups = images, ids, labels, groups
        self.lengths = (ids != 0).sum(dim=1)  # (N,)
        self.mean = torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1)
        self.std = torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1)
        self.image_size, self.channels, self.rows = image_size, channels, rows

    def __len__(self) -> int:
        return self.ids.shape[0]

    def _images(self, idx: Tensor) -> Tensor:  # (B, C, H, W) uint8
        if isinstance(self.images, Tensor):
            return self.images[idx]
        out = []
        for i in idx.tolist():  # file decoding is per file by nature
            try:
                out.append(load_image(self.images[i], self.channels, self.image_size))
            except (FileNotFoundError, ValueError) as err:
                where = self.rows[i] if self.rows is not None else f"row {i}"
                raise type(err)(f"{where}: {err}") from err
        return torch.stack(out)

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
    """One dataset over several evaluation splits; batches carry each sample's split index as ``split``.

    One loader (rather than one per split) keeps ``mmformer test``'s metrics in one table column.
    """
    first = parts[0]
    width = max(p.ids.shape[1] for p in parts)
    ids = torch.cat([F.pad(p.ids, (0, width - p.ids.shape[1])) for p in parts])
    k = max((p.labels.shape[1] for p in parts if p.labels is not None), default=0)
    labels = torch.cat([p.labels if p.labels is not None else torch.full((len(p), k), -1) for p in parts])
    images: Tensor | list[str | Path | Blob]
    if all(isinstance(p.images, Tensor) for p in parts):
        images = torch.cat([p.images for p in parts])  # type: ignore[misc]
    else:
        images = [x for p in parts for x in p.images]
    rows = None
    if all(p.rows is not None for p in parts):
        rows = [r for p in parts for r in p.rows]  # type: ignore[union-attr]
    groups = torch.cat([torch.full((len(p),), i, dtype=torch.long) for i, p in enumerate(parts)])
    return CaptionDataset(images, ids, first.mean.flatten().tolist(), first.std.flatten().tolist(),
                          labels if k else None, first.image_size, first.channels, rows, groups)


def _identity(batch: dict[str, Tensor]) -> dict[str, Tensor]:
    return batch  # __getitems__ already built the batch


class CaptionDataModule(ResumableDataModule, ProvidesDataSpec):
    """Shared machinery: caption vocabulary, tokenization, loaders, exact mid-epoch resume.

    Subclasses implement :meth:`load_raw` (and may override :meth:`eval_splits`).

    Args:
        data_dir: where prepared data and the caption vocabulary are cached.
        image_size: side of the square images the model sees.
        channels: image channels (3 = RGB).
        batch_size: per-process batch size (the contrastive batch is this times the world size).
        vocab_size: pieces of the caption sentencepiece model (the text tokenizer follows it); None = the size
            the vocabulary rule gives the training captions (:mod:`mmformer.tokenizers.vocab_rules`).
        vocab_model_type: sentencepiece algorithm for captions (``bpe``, ``unigram``, ``word``).
        max_caption_len: longest caption in ids (eos included); longer ones are cut.
        num_workers: DataLoader worker processes.
        seed: shuffling seed.
    """

    predict_dir: str | None = None  # folder of images for ``mmformer predict`` (subclasses take it as an argument)

    def __init__(self, data_dir: str = "data", image_size: int = 48, channels: int = 3, batch_size: int = 256,
                 vocab_size: int | None = None, vocab_model_type: str = "bpe", max_caption_len: int = 64,
                 num_workers: int = 0, seed: int = 0) -> None:
        super().__init__()
        self.data_dir, self.image_size, self.channels = Path(data_dir), image_size, channels
        self.batch_size, self.vocab_size, self.vocab_model_type = batch_size, vocab_size, vocab_model_type
        self.max_caption_len, self.num_workers, self.seed = max_caption_len, num_workers, seed
        self.mean: list[float] = [0.5] * channels
        self.std: list[float] = [0.5] * channels
        self.vocab: SentencePieceVocab | None = None
        self._resume: tuple[int, int] | None = None
        self._test_info: list[EvalSplit] = []

    # --- what a source provides ------------------------------------------------------------
    def load_raw(self, split: str) -> tuple[Tensor | list[str], list[str], Tensor | None, list[str] | None]:
        """``split`` → ``(images (N, C, H, W) uint8 or paths, captions, labels (N, K) or None, row names or None)``."""
        raise NotImplementedError

    def eval_splits(self) -> list[str]:
        """Test-time splits, in dataloader order (the first one is the main retrieval split)."""
        return ["test"]

    def split_info(self, split: str) -> EvalSplit:
        """What the task measures on test split ``split`` (default: retrieval, metric prefix ``{split}_``)."""
        return EvalSplit("" if split == "test" else f"{split}_")

    def vocab_prefix(self) -> Path:
        return self.data_dir / f"{type(self).__name__.lower()}_captions"

    # --- shared machinery --------------------------------------------------------------------
    def prepare_data(self) -> None:
        self._train_vocab(self.load_raw("train")[1])

    def _train_vocab(self, captions: list[str]) -> SentencePieceVocab:
        vocab = SentencePieceVocab.train(captions, self.vocab_prefix(), self.vocab_size,  # type: ignore[arg-type]
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
        images, captions, labels, rows = self.load_raw(split)
        return CaptionDataset(images, self.tokenize(captions), self.mean, self.std, labels, self.image_size,
                              self.channels, rows)

    def setup(self, stage: str | None = None) -> None:
        self._stage = stage
        if getattr(self, "_ready", False):
            return
        raw = self.load_raw("train")
        self.vocab = self._train_vocab(raw[1])  # reuses the cached model: the fingerprint matches
        if isinstance(raw[0], Tensor):  # normalization statistics from training images only
            stats = raw[0][:10000].float().div(255)
            self.mean = stats.mean(dim=(0, 2, 3)).tolist()
            self.std = stats.std(dim=(0, 2, 3)).clamp_min(1e-3).tolist()
        self.train_set = CaptionDataset(raw[0], self.tokenize(raw[1]), self.mean, self.std, raw[2],
                                        self.image_size, self.channels, raw[3])
        self.val_set = self._dataset("val")
        names = self.eval_splits()
        self._test_parts = [self._dataset(s) for s in names]  # in the order of the spec's eval_splits
        self._test_info = [self.split_info(s) for s in names]
        self.test_set = concat_splits(self._test_parts)
        self._ready = True

    def _eval_loader(self, ds: Dataset) -> DataLoader:
        return eval_loader(ds, self.batch_size, self.trainer, self.num_workers, collate_fn=_identity)

    def train_dataloader(self) -> DataLoader:
        sampler = ResumableSampler(len(self.train_set), self.seed, True, *world_of(self.trainer))
        self._resume_sampler(sampler)
        # drop_last: every contrastive batch is full, and equal across ranks for the gather
        return DataLoader(self.train_set, batch_size=self.batch_size, sampler=sampler, num_workers=self.num_workers,
                          collate_fn=_identity, drop_last=True, persistent_workers=self.num_workers > 0)

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
        ds = CaptionDataset(files, torch.zeros(len(files), 1, dtype=torch.long), self.mean, self.std, None,
                            self.image_size, self.channels, files)
        return self._eval_loader(ds)

    # --- what a task must match -----------------------------------------------------------------
    def data_spec(self) -> DataSpec:
        """``vocab``, ``tokenize`` (prompts → ids like the captions), ``eval_splits`` (in the order of the
        test batches' ``split`` column) and, after ``setup("predict")`` with ``predict_dir``, ``predict_names``."""
        predicting = self.predict_dir is not None and getattr(self, "_stage", None) == "predict"
        return DataSpec(vocab=self.vocab, tokenize=self.tokenize, eval_splits=list(self._test_info),
                        predict_names=self._predict_files() if predicting else None)


class CsvCaptionData(CaptionDataModule):
    """Image–caption pairs from CSV/TSV tables (OpenCLIP's ``--csv-img-key/--csv-caption-key`` format).

    Args:
        train, val, test: tables with a header row; ``test`` defaults to ``val``.
        image_column: column of image paths (relative to ``image_root`` or the table's folder).
        caption_column: column of captions.
        separator: field separator (``"\\t"`` for TSV, ``","`` for CSV).
        image_root: folder relative image paths resolve against.
        predict_dir: folder of images for ``mmformer predict``.
        shards: read ``<shards>/{train,val,test}`` prepared by ``mmformer prepare captions`` (a folder or an
            ``s3://``/``gs://``... URI) instead of the tables (``<shards>/val`` serves as test when there is no
            ``<shards>/test``): captions are read in ``setup``, images decoded per sample in the workers.
        **kwargs: see :class:`CaptionDataModule`.
    """

    renamed_args: ClassVar[dict[str, str]] = {"train_file": "train", "val_file": "val", "test_file": "test"}

    def __init__(self, train: str | None = None, val: str | None = None, test: str | None = None,
                 image_column: str = "filepath", caption_column: str = "title", separator: str = "\t",
                 image_root: str | None = None,
                 predict_dir: str | None = None, data_dir: str = "data", image_size: int = 64, channels: int = 3,
                 batch_size: int = 128, vocab_size: int | None = None, vocab_model_type: str = "bpe",
                 max_caption_len: int = 64, num_workers: int = 0, seed: int = 0, shards: str | None = None) -> None:
        super().__init__(data_dir, image_size, channels, batch_size, vocab_size, vocab_model_type, max_caption_len,
                         num_workers, seed)
        if (shards is None) == (train is None or val is None):
            raise ValueError("set data.init_args.train and val (caption tables), or data.init_args.shards")
        self.shards = shards
        self.files = {"train": train, "val": val, "test": test or val}
        self.columns, self.separator, self.image_root = (image_column, caption_column), separator, image_root
        self.predict_dir = predict_dir

    def vocab_prefix(self) -> Path:
        name = Path(self.shards.rstrip("/")).name if self.shards is not None else Path(self.files["train"]).stem
        return self.data_dir / "caption_vocab" / name  # type: ignore[arg-type]

    def load_raw(self, split: str) -> tuple[list, list[str], None, list[str]]:
        if self.shards is not None:  # the images stay in the shards: a ShardFile stands for each file
            split = "val" if split == "test" and not has_split(self.shards, "test") else split
            view = split_view(self.shards, split, "captions", ["image", "caption", "row"])
            cols = read_columns(view, ["caption", "row"])
            return shard_files(view, "image"), cols["caption"], None, cols["row"]
        images, captions, rows = read_caption_table(self.files[split], *self.columns, self.separator, self.image_root)
        return images, captions, None, rows


# --- an embedded builder's scenes ---------------------------------------------------------------------------
SHAPE_TEMPLATES = ["a {}", "a small {}", "a large {}"]
COLOR_TEMPLATES = ["a {} shape", "a small {} shape", "a large {} shape"]
EVAL_SPLITS = ("test", "zeroshot", "unseen")


class ShapesCaptionData(CaptionDataModule):
    """Images with captions and zero-shot labels from an embedded builder (the contrastive recipe's, the
    rendered shape scenes of ``corpora.shapes.ShapesCorpus``).

    The builder returns a folder per split (``train``, ``val``, ``test``, ``zeroshot``, ``unseen``), each with
    ``images.npy`` (``(N, H, W, 3)`` uint8), ``captions.txt`` (one a line) and ``labels.npy`` (``(N, K)`` class
    ids, -1 = none), and ``label_classes`` (label column name → class names, in column order). ``test`` runs
    three splits: ``test`` (retrieval over unique captions), ``zeroshot`` (zero-shot accuracy per label column)
    and ``unseen`` (the same on held-out combinations), metric prefixes "", "" and "unseen_".

    Args:
        embedded: the builder (:mod:`mmformer.data.common.embedded`).
        image_size: side of the builder's square images (checked).
        shape_templates, color_templates: zero-shot prompts (``{}`` = class name) of the ``color`` column and of
            the others; each class's embedding is the mean of its prompts'.
        predict_dir: folder of images for ``mmformer predict`` (default: the test split's images).
        **kwargs: see :class:`CaptionDataModule`.
    """

    # options of earlier versions: a run's old config.yaml names its new place (cli/errors.py)
    renamed_args: ClassVar[dict[str, str]] = {k: f"embedded.init_args.{k}" for k in (
        "num_train", "num_eval", "two_shape_fraction", "partial_captions")}

    def __init__(self, embedded: Builder | str, data_dir: str = "data", image_size: int = 48,
                 shape_templates: list[str] | None = None, color_templates: list[str] | None = None,
                 predict_dir: str | None = None, batch_size: int = 256, vocab_size: int = 64,
                 vocab_model_type: str = "bpe", max_caption_len: int = 48, num_workers: int = 0,
                 seed: int = 0) -> None:
        super().__init__(data_dir, image_size, 3, batch_size, vocab_size, vocab_model_type, max_caption_len,
                         num_workers, seed)
        self.embedded = embedded
        self.shape_templates = shape_templates or SHAPE_TEMPLATES
        self.color_templates = color_templates or COLOR_TEMPLATES
        self.predict_dir = predict_dir
        self._built: dict[str, Any] | None = None  # what the builder returned
        self._cache: dict[str, tuple] = {}

    def _splits(self) -> dict[str, Any]:
        if self._built is None:  # renders once; the builder caches the scenes
            self._built = build_embedded(self.embedded, self.data_dir, ("train", "val", *EVAL_SPLITS, "label_classes"))
        return self._built

    def vocab_prefix(self) -> Path:
        return Path(self._splits()["train"]).parent / "captions_sp"

    def prepare_data(self) -> None:
        self._splits()
        super().prepare_data()

    def load_raw(self, split: str) -> tuple:
        if split not in self._cache:
            path = Path(self._splits()[split])
            images = np.load(path / "images.npy")  # (N, H, W, 3) uint8
            if images.shape[1] != self.image_size:
                raise ValueError(f"{path}: the builder's images are {images.shape[1]} px, not data.init_args."
                                 f"image_size={self.image_size}; set them equal")
            captions = (path / "captions.txt").read_text().splitlines()
            self._cache[split] = (torch.from_numpy(images).permute(0, 3, 1, 2).contiguous(), captions,
                                  torch.from_numpy(np.load(path / "labels.npy")), None)
        return self._cache[split]

    def eval_splits(self) -> list[str]:
        return list(EVAL_SPLITS)

    def split_info(self, split: str) -> EvalSplit:
        if split == "test":
            return EvalSplit("", retrieval=True)
        classes: dict[str, list[str]] = self._splits()["label_classes"]
        specs = {name: ZeroShotSpec(k, list(names), self.color_templates if name == "color" else self.shape_templates)
                 for k, (name, names) in enumerate(classes.items())}
        return EvalSplit("unseen_" if split == "unseen" else "", retrieval=False, zeroshot=specs)

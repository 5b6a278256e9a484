"""Image–caption pairs for contrastive training: the dataset, the shared DataModule machinery, and
the OpenCLIP-style CSV/TSV reader (an image-path column and a caption column).

Batches are dicts: ``image (B, C, H, W)`` float normalized, ``text (B, T)`` long right-padded ids
(pad 0, eos 3), ``index (B,)`` long row numbers, and ``labels (B, K)`` long (-1 = none) for
splits that carry zero-shot labels. Captions are tokenized once at ``setup`` (a sentencepiece model
trained on the training captions, cached by fingerprint), so a batch is a few tensor gathers.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from mmformer.data.sampling import ResumableDataModule, ResumableSampler, UnpaddedDistributedSampler
from mmformer.tokenizers.sentencepiece_vocab import SentencePieceVocab


@dataclass
class ZeroShotSpec:
    """Zero-shot classification of one label column from text prompts (CLIP's prompt ensembling).

    Attributes:
        column: which column of the split's ``labels`` holds the class index.
        classes: class names, in label order.
        templates: prompts with ``{}`` for the class name; a class's text embedding is the
            normalized mean of its templates' embeddings.
    """

    column: int
    classes: list[str]
    templates: list[str]


@dataclass
class EvalSplit:
    """An evaluation split and what the task measures on it.

    Attributes:
        name: metric prefix ("" for the main test split, e.g. "unseen_" otherwise).
        retrieval: measure image↔text recall@k over the split's pairs.
        zeroshot: label name → zero-shot spec.
    """

    name: str
    dataset: "CaptionDataset"
    retrieval: bool = True
    zeroshot: dict[str, ZeroShotSpec] = field(default_factory=dict)


class CaptionDataset(Dataset):
    """Images (uint8 tensor in memory, or file paths decoded lazily) with pre-tokenized captions.

    Index ``v >= N`` reads row ``v % N`` (the virtual indices of :class:`ResumableSampler`).
    Batched fetching (``__getitems__``) gathers a whole batch with tensor indexing.

    Args:
        images: ``(N, C, H, W)`` uint8, or N image paths (decoded with :func:`load_image`).
        ids: ``(N, T)`` long right-padded caption ids.
        mean, std: per-channel normalization of ``[0, 1]`` pixels.
        labels: ``(N, K)`` long zero-shot labels (-1 = none), or None.
        image_size, channels: decoding size for image paths.
        rows: the source row of each sample (named in decoding errors).
        groups: ``(N,)`` long evaluation-split index of each sample (batches carry it as ``split``).
    """

    def __init__(self, images: Tensor | Sequence[str | Path], ids: Tensor, mean: Sequence[float],
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
        from mmformer.data.image_files import load_image

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
            "image": (self._images(idx).float().div_(255) - self.mean) / self.std,
            "text": self.ids[idx, :width],
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
    images: Tensor | list[str | Path]
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


class CaptionDataModule(ResumableDataModule):
    """Shared machinery: caption vocabulary, tokenization, loaders, exact mid-epoch resume.

    Subclasses implement :meth:`load_raw` (and may override :meth:`eval_splits`).

    Args:
        data_dir: where prepared data and the caption vocabulary are cached.
        image_size: side of the square images the model sees.
        channels: image channels (3 = RGB).
        batch_size: per-process batch size (the contrastive batch is this times the world size).
        vocab_size: pieces of the caption sentencepiece model; the text tokenizer's ``vocab_size``
            must equal it.
        vocab_model_type: sentencepiece algorithm for captions (``bpe``, ``unigram``, ``word``).
        max_caption_len: longest caption in ids (eos included); longer ones are cut.
        num_workers: DataLoader worker processes.
        seed: shuffling seed.
    """

    def __init__(self, data_dir: str = "data", image_size: int = 48, channels: int = 3, batch_size: int = 256,
                 vocab_size: int = 64, vocab_model_type: str = "bpe", max_caption_len: int = 64,
                 num_workers: int = 0, seed: int = 0) -> None:
        super().__init__()
        self.data_dir, self.image_size, self.channels = Path(data_dir), image_size, channels
        self.batch_size, self.vocab_size, self.vocab_model_type = batch_size, vocab_size, vocab_model_type
        self.max_caption_len, self.num_workers, self.seed = max_caption_len, num_workers, seed
        self.mean: list[float] = [0.5] * channels
        self.std: list[float] = [0.5] * channels
        self.vocab: SentencePieceVocab | None = None
        self._resume: tuple[int, int] | None = None

    # --- what a source provides ------------------------------------------------------------
    def load_raw(self, split: str) -> tuple[Tensor | list[str], list[str], Tensor | None, list[str] | None]:
        """``split`` → ``(images (N, C, H, W) uint8 or paths, captions, labels (N, K) or None, row names or None)``."""
        raise NotImplementedError

    def eval_splits(self) -> list[str]:
        """Test-time splits, in dataloader order (the first one is the main retrieval split)."""
        return ["test"]

    def split_info(self, split: str, dataset: "CaptionDataset") -> EvalSplit:
        return EvalSplit("" if split == "test" else f"{split}_", dataset)

    def vocab_prefix(self) -> Path:
        return self.data_dir / f"{type(self).__name__.lower()}_captions"

    # --- shared machinery --------------------------------------------------------------------
    def prepare_data(self) -> None:
        self._train_vocab(self.load_raw("train")[1])

    def _train_vocab(self, captions: list[str]) -> SentencePieceVocab:
        vocab = SentencePieceVocab.train(captions, self.vocab_prefix(), self.vocab_size,  # type: ignore[arg-type]
                                         model_type=self.vocab_model_type, byte_fallback=False)
        if vocab.vocab_size != self.vocab_size:
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
        self.test_splits = [self.split_info(s, self._dataset(s)) for s in self.eval_splits()]
        self.test_set = concat_splits([s.dataset for s in self.test_splits])
        self._ready = True

    def _eval_loader(self, ds: Dataset) -> DataLoader:
        sampler = None
        t = self.trainer
        if t is not None and t.world_size > 1:  # exact metrics under DDP: no repeated samples
            sampler = UnpaddedDistributedSampler(ds, t.world_size, t.global_rank)  # type: ignore[arg-type]
        return DataLoader(ds, batch_size=self.batch_size, sampler=sampler, num_workers=self.num_workers,
                          collate_fn=_identity, persistent_workers=self.num_workers > 0)

    def train_dataloader(self) -> DataLoader:
        sampler = ResumableSampler(len(self.train_set), self.seed, shuffle=True)
        if self._resume is not None:
            sampler.resume_at(*self._resume)
        # drop_last: every contrastive batch is full, and equal across ranks for the gather
        return DataLoader(self.train_set, batch_size=self.batch_size, sampler=sampler, num_workers=self.num_workers,
                          collate_fn=_identity, drop_last=True, persistent_workers=self.num_workers > 0)

    def val_dataloader(self) -> DataLoader:
        return self._eval_loader(self.val_set)

    def test_dataloader(self) -> DataLoader:
        """All evaluation splits in one loader (batches carry ``split``, the index into ``test_splits``)."""
        return self._eval_loader(self.test_set)

    def predict_dataloader(self) -> DataLoader:
        """Images of ``predict_dir`` when a subclass sets it, else the main test split."""
        predict_dir = getattr(self, "predict_dir", None)
        if predict_dir is None:
            return self._eval_loader(self.test_splits[0].dataset)
        from mmformer.data.image_files import list_images

        files = list_images(predict_dir)
        if not files:
            raise ValueError(f"no image files in {predict_dir}")
        ds = CaptionDataset([str(f) for f in files], torch.zeros(len(files), 1, dtype=torch.long), self.mean,
                            self.std, None, self.image_size, self.channels, [str(f) for f in files])
        self.predict_files = [str(f) for f in files]
        return self._eval_loader(ds)


def read_caption_table(path: str | Path, image_column: str = "filepath", caption_column: str = "title",
                       separator: str = "\t", image_root: str | Path | None = None
                       ) -> tuple[list[str], list[str], list[str]]:
    """Reads an OpenCLIP-style CSV/TSV → ``(image paths, captions, row names)``.

    Relative image paths resolve against ``image_root`` (default: the table's folder). Every row is
    checked here: a missing image file or an empty caption raises ``ValueError`` naming the file and
    line; an undecodable image is named when it is first read.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"caption table {path} does not exist")
    root = Path(image_root) if image_root is not None else path.parent
    images, captions, rows = [], [], []
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f, delimiter=separator)
        missing = [c for c in (image_column, caption_column) if c not in (reader.fieldnames or [])]
        if missing:
            raise ValueError(f"{path}: no column {missing[0]!r}; the header has {reader.fieldnames} (separator "
                             f"{separator!r}); set image_column/caption_column/separator")
        for line, row in enumerate(reader, start=2):  # line 1 is the header
            where = f"{path}:{line}"
            image, text = (row.get(image_column) or "").strip(), (row.get(caption_column) or "").strip()
            if not text:
                raise ValueError(f"{where}: empty caption in column {caption_column!r}; fill it or drop the row")
            if not image:
                raise ValueError(f"{where}: empty image path in column {image_column!r}")
            file = Path(image) if Path(image).is_absolute() else root / image
            if not file.is_file():
                raise ValueError(f"{where}: image file {file} does not exist")
            images.append(str(file))
            captions.append(text)
            rows.append(where)
    if not images:
        raise ValueError(f"{path} has no rows")
    return images, captions, rows


class CsvCaptionData(CaptionDataModule):
    """Image–caption pairs from CSV/TSV tables (OpenCLIP's ``--csv-img-key/--csv-caption-key`` format).

    Args:
        train_file, val_file, test_file: tables with a header row; ``test_file`` defaults to ``val_file``.
        image_column: column of image paths (relative to ``image_root`` or the table's folder).
        caption_column: column of captions.
        separator: field separator (``"\\t"`` for TSV, ``","`` for CSV).
        image_root: folder relative image paths resolve against.
        predict_dir: folder of images for ``mmformer predict``.
        **kwargs: see :class:`CaptionDataModule`.
    """

    def __init__(self, train_file: str, val_file: str, test_file: str | None = None, image_column: str = "filepath",
                 caption_column: str = "title", separator: str = "\t", image_root: str | None = None,
                 predict_dir: str | None = None, data_dir: str = "data", image_size: int = 64, channels: int = 3,
                 batch_size: int = 128, vocab_size: int = 1000, vocab_model_type: str = "bpe",
                 max_caption_len: int = 64, num_workers: int = 0, seed: int = 0) -> None:
        super().__init__(data_dir, image_size, channels, batch_size, vocab_size, vocab_model_type, max_caption_len,
                         num_workers, seed)
        self.files = {"train": train_file, "val": val_file, "test": test_file or val_file}
        self.columns, self.separator, self.image_root = (image_column, caption_column), separator, image_root
        self.predict_dir = predict_dir

    def vocab_prefix(self) -> Path:
        return self.data_dir / "caption_vocab" / Path(self.files["train"]).stem

    def load_raw(self, split: str) -> tuple[list[str], list[str], None, list[str]]:
        images, captions, rows = read_caption_table(self.files[split], *self.columns, self.separator, self.image_root)
        return images, captions, None, rows

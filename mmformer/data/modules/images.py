"""Image-classification DataModules: the shared base (split, transforms, loaders) and its sources —
IDX files, Fashion-MNIST, scikit-learn digits, torchvision datasets by name, ImageFolder trees.

Batches are dicts keyed by the classification task's roles: ``input`` (images ``(B, C, H, W)`` float32
normalized), ``label`` ``(B,)`` long and ``index`` ``(B,)`` long row numbers; predict batches carry
``input`` and ``index`` (the row of the file in ``data_spec().predict_names``). The validation split
is carved from the training data (seeded), never from the test set.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset
from torchvision.transforms import v2

from mmformer.data.common.augment import CropFlipNormalize
from mmformer.data.common.loading import eval_loader
from mmformer.data.common.sampling import ResumableDataModule, seeded_call
from mmformer.data.modules.image_sources import (
    FolderImages, ImageReader, LazyImageDataset, ShardImages, image_stats, match_channels,
)
from mmformer.data.readers.idx import find_idx, read_idx
from mmformer.data.readers.image_files import (
    ImageFileDataset, folder_classes, image_folder_files, list_images, load_image, read_image_folder,
)
from mmformer.data.readers.packaged import (
    DIGITS_CLASSES, FASHION_MNIST_CLASSES, FASHION_MNIST_DIR, FASHION_MNIST_DOWNLOAD_DIR, download_fashion_mnist,
    load_digits_split,
)
from mmformer.data.shards.dataset import ShardView
from mmformer.data.shards.format import ShardError
from mmformer.data.spec import DataSpec, ProvidesDataSpec


class TensorImageDataset(Dataset):
    """``images (N, C, H, W)`` uint8 and ``labels (N,)`` held in memory, transformed per sample;
    a sample is ``{"input": image, "label": label, "index": row}``.

    Index ``v >= N`` reads sample ``v % N``: :class:`ResumableSampler` yields ``epoch * N + i``,
    and with ``seed`` set, the random transform of index ``v`` is seeded by ``seed + v``, so
    augmentation is reproducible per (epoch, sample) and untouched by the global RNG.
    """

    def __init__(
        self, images: Tensor, labels: Tensor, transform: Callable[[Tensor], Tensor] | None = None,
        seed: int | None = None,
    ) -> None:
        if images.dim() != 4 or images.shape[0] != labels.shape[0]:
            raise ValueError(f"images {tuple(images.shape)} and labels {tuple(labels.shape)} do not match (N, C, H, W)/(N,)")
        self.images, self.labels, self.transform, self.seed = images, labels.long(), transform, seed

    def __len__(self) -> int:
        return self.images.shape[0]

    def __getitem__(self, v: int) -> dict[str, Tensor]:
        i = v % len(self)
        x = self.images[i]
        if self.transform is not None:
            x = self.transform(x) if self.seed is None else seeded_call(self.transform, x, self.seed + v)
        return {"input": x, "label": self.labels[i], "index": torch.tensor(i)}


def check_labels(labels: Tensor, num_classes: int, source: str) -> None:
    """Labels must lie in ``[0, num_classes)``; the message names the first bad value and its index."""
    bad = ((labels < 0) | (labels >= num_classes)).nonzero()
    if len(bad):
        i = int(bad[0])
        raise ValueError(
            f"{source}: label {int(labels[i])} at index {i} is out of range for {num_classes} classes "
            f"(expected 0..{num_classes - 1})"
        )


class ImageClassificationData(ResumableDataModule, ProvidesDataSpec):
    """Base of the image DataModules: split, transforms, loaders. Subclasses implement ``load``.

    Args:
        image_size: size the model sees (images are resized when they differ).
        channels: 1 (grayscale) or 3 (RGB); inputs are converted to it.
        batch_size: per-process batch size.
        val_fraction: share of the training data held out for validation (seeded split).
        augment: random crop (with ``crop_padding``) and, if ``hflip``, horizontal flips in training.
        crop_padding: pixels of padding for the random crop.
        hflip: random horizontal flips (off for digits and text-like images).
        num_workers: DataLoader worker processes.
        seed: seed of the validation split.
        predict_dir: folder of image files for ``mmformer predict`` (one prediction per file).
        shards: read ``<shards>/train`` and ``<shards>/test`` prepared by ``mmformer prepare`` (a folder or an
            ``s3://``/``gs://``... URI) instead of the source: images are decoded per sample, in the workers.
        chunk_window: with ``shards``, shuffle chunk-aware: mix this many chunks at a time and give each DDP
            rank its own block of chunks (for object storage); None shuffles globally (local disks, NFS).
    """

    classes: list[str]

    def __init__(
        self,
        image_size: int = 28,
        channels: int = 1,
        batch_size: int = 128,
        val_fraction: float = 0.1,
        augment: bool = True,
        crop_padding: int = 2,
        hflip: bool = True,
        num_workers: int = 0,
        seed: int = 0,
        predict_dir: str | None = None,
        shards: str | None = None,
        chunk_window: int | None = None,
    ) -> None:
        super().__init__()
        if not 0.0 <= val_fraction < 1.0:
            raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction}")
        self.image_size, self.channels, self.batch_size = image_size, channels, batch_size
        self.val_fraction, self.augment, self.crop_padding, self.hflip = val_fraction, augment, crop_padding, hflip
        self.num_workers, self.seed, self.predict_dir = num_workers, seed, predict_dir
        self.shards, self.chunk_window = shards, chunk_window
        self.mean: Sequence[float] = (0.5,) * channels
        self.std: Sequence[float] = (0.5,) * channels

    # --- what a source provides ------------------------------------------------------------
    def load(self, split: str) -> tuple[Tensor, Tensor]:
        """``split`` in {"train", "test"} → ``(images (N, C, H, W) uint8, labels (N,))``."""
        raise NotImplementedError

    def reader(self, split: str) -> ImageReader | None:
        """A per-sample reader of ``split`` (images decoded on demand), or None to ``load`` it into memory."""
        if self.shards is None:
            return None
        view = ShardView(f"{self.shards.rstrip('/')}/{split}", "image_classification", ["image", "label"])
        named, count = view.info.meta.get("classes"), int(view.info.meta.get("num_classes", 0))
        if not getattr(self, "classes", None):
            self.classes = list(named or [str(c) for c in range(count)])
        elif named is not None and list(named) != list(self.classes):
            raise ShardError(f"{view.uri} holds classes {named}, not this dataset's {self.classes}: shards of "
                             f"another dataset")
        if count > len(self.classes):
            raise ShardError(f"{view.uri} holds {count} classes, more than this dataset's {len(self.classes)}")
        return ShardImages(view, self.channels, self.image_size)

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    # --- shared machinery --------------------------------------------------------------------
    def _prepare(self, images: Tensor, labels: Tensor, split: str) -> tuple[Tensor, Tensor]:
        check_labels(labels, self.num_classes, f"{type(self).__name__} {split} split")
        images = match_channels(images, self.channels)
        if images.shape[-2:] != (self.image_size, self.image_size):
            images = v2.functional.resize(images, [self.image_size, self.image_size], antialias=True)
        return images, labels

    def transforms(self, train: bool) -> CropFlipNormalize:
        """uint8 image → normalized float32; in training with ``augment``, a padded random crop (and a flip).
        The same output as torchvision v2's RandomCrop/RandomHorizontalFlip/ToDtype/Normalize, at about a third of
        the per-sample cost (:mod:`mmformer.data.common.augment`)."""
        augment = train and self.augment
        return CropFlipNormalize(self.image_size, self.mean, self.std, crop=augment, padding=self.crop_padding,
                                 hflip=augment and self.hflip)

    def load_images(self, paths: Sequence[str]) -> Tensor:
        """Image files → the normalized ``(B, C, H, W)`` batch the model expects (call ``setup`` first)."""
        tf = self.transforms(train=False)
        return torch.stack([tf(load_image(p, self.channels, self.image_size)) for p in paths])

    def setup(self, stage: str | None = None) -> None:
        self._stage = stage
        if getattr(self, "_ready", False):
            return
        reader = self.reader("train")
        if reader is not None:
            self._setup_lazy(reader)
            return
        images, labels = self._prepare(*self.load("train"), "train")
        stats = images[: 10000].float().div(255)
        self.mean = stats.mean(dim=(0, 2, 3)).tolist()  # normalization from the training file, never test
        self.std = stats.std(dim=(0, 2, 3)).clamp_min(1e-3).tolist()
        perm = torch.randperm(len(labels), generator=torch.Generator().manual_seed(self.seed))
        n_val = int(round(self.val_fraction * len(labels)))
        train, val = perm[n_val:], perm[:n_val]  # validation is carved from train, never from test
        self.train_set = TensorImageDataset(images[train], labels[train], self.transforms(train=True), self.seed)
        self.val_set = TensorImageDataset(images[val], labels[val], self.transforms(train=False))
        self.test_set = TensorImageDataset(*self._prepare(*self.load("test"), "test"), self.transforms(train=False))
        self._ready = True

    def _setup_lazy(self, reader: ImageReader) -> None:
        """``setup`` for images decoded per sample: the same statistics, carve and transforms as in memory."""
        self.mean, self.std = image_stats(reader)
        perm = torch.randperm(len(reader), generator=torch.Generator().manual_seed(self.seed))
        n_val = int(round(self.val_fraction * len(reader)))
        self.train_set = LazyImageDataset(reader, perm[n_val:], self.transforms(train=True), self.seed)
        self.val_set = LazyImageDataset(reader, perm[:n_val], self.transforms(train=False))
        test = self.reader("test")
        assert test is not None
        self.test_set = LazyImageDataset(test, torch.arange(len(test)), self.transforms(train=False))
        self._ready = True

    def _eval_loader(self, ds: Dataset) -> DataLoader:
        return eval_loader(ds, self.batch_size, self.trainer, self.num_workers)

    def train_dataloader(self) -> DataLoader:
        lazy, window = isinstance(self.train_set, LazyImageDataset), self.chunk_window
        chunks = self.train_set.chunks() if lazy and window is not None else None  # type: ignore[union-attr]
        return self._shuffled_loader(self.train_set, chunks=chunks, window=window or 1)

    def val_dataloader(self) -> DataLoader:
        return self._eval_loader(self.val_set)

    def test_dataloader(self) -> DataLoader:
        return self._eval_loader(self.test_set)

    def _predict_files(self) -> list[Path]:
        """The readable image files of ``predict_dir``, sorted; checked once (each decoded) before any
        prediction, so an unreadable file is skipped with a warning naming it instead of stopping the
        run halfway and losing the other predictions."""
        if self.predict_dir is None:
            raise ValueError("set data.init_args.predict_dir to a folder of images to predict")
        cached = getattr(self, "_readable", None)
        if cached is not None and cached[0] == self.predict_dir:
            return cached[1]
        files = list_images(self.predict_dir)
        if not files:
            raise ValueError(f"no image files in {self.predict_dir}")
        readable, bad = [], []
        for path in files:
            try:
                load_image(path, self.channels, self.image_size)
                readable.append(path)
            except (ValueError, FileNotFoundError) as err:
                bad.append(str(err))
        if bad:
            warnings.warn(f"{self.predict_dir}: skipped {len(bad)} unreadable image file(s), which get no "
                          f"prediction: " + "; ".join(bad), stacklevel=2)
        if not readable:
            raise ValueError(f"no readable image files in {self.predict_dir} ({len(bad)} unreadable)")
        self._readable = (self.predict_dir, readable)
        return readable

    def predict_dataloader(self) -> DataLoader:
        ds = ImageFileDataset(self._predict_files(), self.channels, self.image_size, self.transforms(train=False))
        return self._eval_loader(ds)  # file i of the batches' index is predict_names[i]

    def data_spec(self) -> DataSpec:
        """``class_names``; after ``setup("predict")``, ``predict_names``: the files of ``predict_dir`` in order."""
        predicting = getattr(self, "_stage", None) == "predict"
        names = [str(f) for f in self._predict_files()] if predicting else None
        return DataSpec(class_names=list(self.classes), predict_names=names)


class IdxImageData(ImageClassificationData):
    """Images and labels in MNIST-style IDX files: ``{train,t10k}-{images-idx3,labels-idx1}-ubyte[.gz]``.

    Args:
        root: folder holding the four files.
        classes: class names, index = label.
        **kwargs: see :class:`ImageClassificationData`.
    """

    def __init__(self, root: str, classes: list[str], **kwargs) -> None:
        super().__init__(**kwargs)
        self.root, self.classes = root, list(classes)

    def load(self, split: str) -> tuple[Tensor, Tensor]:
        prefix = "train" if split == "train" else "t10k"
        if not Path(self.root).is_dir():
            raise FileNotFoundError(self._missing_hint())
        images = read_idx(find_idx(self.root, f"{prefix}-images-idx3-ubyte"))
        labels = read_idx(find_idx(self.root, f"{prefix}-labels-idx1-ubyte"))
        if images.shape[0] != labels.shape[0]:
            raise ValueError(f"{self.root}: {images.shape[0]} {split} images but {labels.shape[0]} labels")
        return images.unsqueeze(1), labels.long()  # (N, 1, H, W)

    def _missing_hint(self) -> str:
        return f"IDX dataset folder {self.root} does not exist"


class FashionMNISTData(IdxImageData):
    """Fashion-MNIST (60k train / 10k test, 28x28 gray, 10 classes).

    Read offline from Debian's ``dataset-fashion-mnist`` (``/usr/share/datasets/fashion-mnist``);
    with ``download=True`` and a network, torchvision fetches it into ``data/fashion-mnist`` instead.
    """

    def __init__(self, root: str = FASHION_MNIST_DIR, download: bool = False, **kwargs) -> None:
        super().__init__(root, FASHION_MNIST_CLASSES, **kwargs)
        self.download = download

    def prepare_data(self) -> None:
        if self.download and not Path(self.root).is_dir():
            download_fashion_mnist()

    def setup(self, stage: str | None = None) -> None:
        if self.download and not Path(self.root).is_dir():
            self.root = FASHION_MNIST_DOWNLOAD_DIR
        super().setup(stage)

    def _missing_hint(self) -> str:
        return (f"Fashion-MNIST not found at {self.root}: install the Debian package "
                f"(apt-get install dataset-fashion-mnist, or `make setup`), or pass download=True with a network")


class DigitsData(ImageClassificationData):
    """scikit-learn's 8x8 handwritten digits (1,797 images): a seconds-long sanity set.

    The test split (``test_fraction``) and the validation split are carved by seeded permutations.
    """

    def __init__(
        self, test_fraction: float = 0.2, image_size: int = 8, crop_padding: int = 1, hflip: bool = False, **kwargs
    ) -> None:
        # Defaults differing from the base are explicit parameters: LightningCLI passes every default.
        super().__init__(image_size=image_size, crop_padding=crop_padding, hflip=hflip, **kwargs)
        self.test_fraction = test_fraction
        self.classes = list(DIGITS_CLASSES)

    def load(self, split: str) -> tuple[Tensor, Tensor]:
        return load_digits_split(split, self.test_fraction)


class TorchvisionImageData(ImageClassificationData):
    """Any in-memory torchvision classification dataset by name (MNIST, FashionMNIST, KMNIST, CIFAR10, ...).

    Args:
        name: class name in ``torchvision.datasets`` with a ``train=`` argument.
        root: download/cache folder.
        download: let torchvision download it (needs a network).
    """

    def __init__(self, name: str = "CIFAR10", root: str = "data", download: bool = False, **kwargs) -> None:
        super().__init__(**kwargs)
        import torchvision.datasets as tvd

        if not hasattr(tvd, name):
            raise ValueError(f"torchvision.datasets has no dataset {name!r}")
        self.name, self.root, self.download = name, root, download
        self._cls = getattr(tvd, name)
        self.classes = list(getattr(self._cls, "classes", []))

    def prepare_data(self) -> None:
        if self.download:
            self._cls(self.root, train=True, download=True)
            self._cls(self.root, train=False, download=True)

    def load(self, split: str) -> tuple[Tensor, Tensor]:
        try:
            ds = self._cls(self.root, train=split == "train", download=False)
        except RuntimeError as e:
            raise FileNotFoundError(f"{self.name} not found under {self.root}: {e}; pass download=True") from e
        images = torch.as_tensor(np.asarray(ds.data))
        images = images.unsqueeze(1) if images.dim() == 3 else images.permute(0, 3, 1, 2)  # (N, C, H, W)
        labels = torch.as_tensor(np.asarray(ds.targets)).long()
        if not self.classes:
            self.classes = [str(c) for c in range(int(labels.max()) + 1)]
        return images.contiguous(), labels


class ImageFolderData(ImageClassificationData):
    """The ImageFolder layout: ``root/train/<class>/*.png`` and ``root/test/<class>/*.png``.

    Class names are the sub-folder names (sorted, as torchvision does). Images are decoded once,
    converted to ``channels`` and resized to ``image_size``, and held in memory as uint8; with ``lazy``
    they are decoded per sample in the DataLoader's workers instead (a folder bigger than memory trains).

    Args:
        root: folder with ``train/`` and ``test/`` (may be None with ``shards``).
        lazy: decode per sample instead of holding every image in memory (same batches either way).
        **kwargs: see :class:`ImageClassificationData`.
    """

    def __init__(self, root: str | None = None, lazy: bool = False, **kwargs) -> None:
        super().__init__(**kwargs)
        if root is None and self.shards is None:
            raise ValueError("set data.init_args.root (an ImageFolder tree) or data.init_args.shards")
        self.root, self.lazy = (Path(root) if root is not None else None), lazy
        self.classes = folder_classes(self.root / "train") if self.root is not None else []

    def reader(self, split: str) -> ImageReader | None:
        if self.shards is not None or not self.lazy:
            return super().reader(split)
        assert self.root is not None
        files = image_folder_files(self.root / split, self.classes)
        if not files:
            raise ValueError(f"no images found under {self.root / split}")
        return FolderImages([p for p, _ in files], [y for _, y in files], self.channels, self.image_size)

    def load(self, split: str) -> tuple[Tensor, Tensor]:
        assert self.root is not None
        return read_image_folder(self.root / split, self.classes, self.channels, self.image_size)

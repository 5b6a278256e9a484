"""Where images come from: IDX files (Fashion-MNIST), sklearn digits, torchvision datasets, ImageFolder."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from mmformer.data.idx import find_idx, read_idx
from mmformer.data.images import ImageClassificationData

FASHION_MNIST_DIR = "/usr/share/datasets/fashion-mnist"  # Debian package dataset-fashion-mnist
FASHION_MNIST_CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                         "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]


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
            from torchvision.datasets import FashionMNIST

            FashionMNIST("data", train=True, download=True)
            FashionMNIST("data", train=False, download=True)

    def setup(self, stage: str | None = None) -> None:
        if self.download and not Path(self.root).is_dir():
            self.root = "data/FashionMNIST/raw"
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
        self.classes = [str(d) for d in range(10)]

    def load(self, split: str) -> tuple[Tensor, Tensor]:
        from sklearn.datasets import load_digits

        digits = load_digits()
        images = torch.from_numpy(np.clip(digits.images * 16, 0, 255).astype(np.uint8)).unsqueeze(1)
        labels = torch.from_numpy(digits.target).long()
        perm = torch.randperm(len(labels), generator=torch.Generator().manual_seed(1234))
        n_test = int(round(self.test_fraction * len(labels)))
        idx = perm[:n_test] if split == "test" else perm[n_test:]
        return images[idx], labels[idx]


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

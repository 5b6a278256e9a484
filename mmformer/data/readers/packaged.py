"""Image sets that installed packages ship, read as they are (nothing is built): Fashion-MNIST as Debian's
``dataset-fashion-mnist`` installs it (IDX files, or torchvision's download where a network exists), and
scikit-learn's 8x8 digits."""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

FASHION_MNIST_DIR = "/usr/share/datasets/fashion-mnist"  # Debian package dataset-fashion-mnist
FASHION_MNIST_CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                         "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]
FASHION_MNIST_DOWNLOAD_DIR = "data/FashionMNIST/raw"  # where download_fashion_mnist puts the IDX files
DIGITS_CLASSES = [str(d) for d in range(10)]


def download_fashion_mnist() -> str:
    """Fetches Fashion-MNIST with torchvision (needs a network) into ``data/``; returns the IDX folder."""
    from torchvision.datasets import FashionMNIST

    FashionMNIST("data", train=True, download=True)
    FashionMNIST("data", train=False, download=True)
    return FASHION_MNIST_DOWNLOAD_DIR


def load_digits_split(split: str, test_fraction: float) -> tuple[Tensor, Tensor]:
    """scikit-learn's digits → ``(images (N, 1, 8, 8) uint8, labels (N,))`` of ``split``.

    The test split is the first ``test_fraction`` of a fixed permutation (seed 1234); "train" is the rest.
    """
    from sklearn.datasets import load_digits

    digits = load_digits()
    images = torch.from_numpy(np.clip(digits.images * 16, 0, 255).astype(np.uint8)).unsqueeze(1)
    labels = torch.from_numpy(digits.target).long()
    perm = torch.randperm(len(labels), generator=torch.Generator().manual_seed(1234))
    n_test = int(round(test_fraction * len(labels)))
    idx = perm[:n_test] if split == "test" else perm[n_test:]
    return images[idx], labels[idx]

"""Image files on disk: safe decoding with clear errors, ImageFolder layouts, and prediction inputs."""

from __future__ import annotations

from pathlib import Path

import torch
from PIL import Image, UnidentifiedImageError
from torch import Tensor
from torch.utils.data import Dataset
from torchvision.transforms import v2

from mmformer.data.images import ImageClassificationData

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm")


def load_image(path: str | Path, channels: int, size: int) -> Tensor:
    """Decodes one image file to uint8 ``(channels, size, size)``.

    Grayscale and RGB inputs are converted to ``channels`` (1 → luma "L", 3 → "RGB"), so a
    grayscale/RGB mismatch never reaches the model.

    Raises:
        FileNotFoundError: the file is missing.
        ValueError: the file is not a decodable image (names the file).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"image file {path} does not exist")
    try:
        with Image.open(path) as img:
            img = img.convert("L" if channels == 1 else "RGB")
            img = img.resize((size, size), Image.Resampling.BILINEAR)
            tensor = v2.functional.pil_to_tensor(img)
    except (UnidentifiedImageError, OSError, SyntaxError) as e:
        raise ValueError(f"{path} is not a readable image ({e}); remove it or replace it with a valid image") from e
    return tensor


def list_images(folder: str | Path) -> list[Path]:
    """Image files directly under ``folder``, sorted by name."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"image folder {folder} does not exist")
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS)


class ImageFileDataset(Dataset):
    """Image files → ``(image tensor, path string)`` for prediction."""

    def __init__(self, paths: list[Path], channels: int, size: int, transform: v2.Compose) -> None:
        self.paths, self.channels, self.size, self.transform = paths, channels, size, transform

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> tuple[Tensor, str]:
        return self.transform(load_image(self.paths[i], self.channels, self.size)), str(self.paths[i])


class ImageFolderData(ImageClassificationData):
    """The ImageFolder layout: ``root/train/<class>/*.png`` and ``root/test/<class>/*.png``.

    Class names are the sub-folder names (sorted, as torchvision does). Images are decoded once,
    converted to ``channels`` and resized to ``image_size``, and held in memory as uint8.

    Args:
        root: folder with ``train/`` and ``test/``.
        **kwargs: see :class:`ImageClassificationData`.
    """

    def __init__(self, root: str, **kwargs) -> None:
        super().__init__(**kwargs)
        self.root = Path(root)
        train = self.root / "train"
        if not train.is_dir():
            raise FileNotFoundError(f"ImageFolder root {self.root} has no train/ folder (expected train/<class>/*.png)")
        self.classes = sorted(d.name for d in train.iterdir() if d.is_dir())
        if not self.classes:
            raise ValueError(f"{train} has no class sub-folders")

    def load(self, split: str) -> tuple[Tensor, Tensor]:
        folder = self.root / split
        if not folder.is_dir():
            raise FileNotFoundError(f"ImageFolder split folder {folder} does not exist")
        images, labels = [], []
        for sub in sorted(d for d in folder.iterdir() if d.is_dir()):
            if sub.name not in self.classes:
                raise ValueError(f"{sub} is a class not present in train/ (known: {self.classes})")
            for path in list_images(sub):
                images.append(load_image(path, self.channels, self.image_size))
                labels.append(self.classes.index(sub.name))
        if not images:
            raise ValueError(f"no images found under {folder}")
        return torch.stack(images), torch.tensor(labels)

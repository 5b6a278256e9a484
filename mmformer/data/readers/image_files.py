"""Image files on disk: safe decoding with clear errors (``load_image``), ImageFolder trees
(``folder_classes``, ``read_image_folder``) and folders of images to predict (``list_images``,
``ImageFileDataset``)."""

from __future__ import annotations

import io
import struct
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from PIL import Image
from torch import Tensor
from torch.utils.data import Dataset
from torchvision.io import ImageReadMode, decode_png
from torchvision.transforms import v2

from mmformer.data.readers.blob import Blob, open_source

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm")
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_PNG_COLOR_TYPE = {1: 0, 3: 2}  # channels → the PNG colour type that needs no conversion: 0 gray, 2 RGB


def _png_op() -> Callable[[Tensor], Tensor]:
    """torchvision's decode op without ``torchvision.io.decode_png``'s per-call usage logging and checks
    (a large share of a small image's decode); that public wrapper where the op cannot be reached."""
    try:
        op = torch.ops.image.decode_png
    except (AttributeError, RuntimeError):
        return lambda data: decode_png(data)
    return lambda data: op(data, ImageReadMode.UNCHANGED.value, False)


_decode_png_fast = _png_op()


def decode_png_as_is(data: bytes, channels: int, size: int) -> Tensor | None:
    """uint8 ``(channels, size, size)`` straight from libpng, or None when PIL has more to do than decode.

    Only for an 8-bit gray (``channels`` 1) or RGB (3) PNG that already is ``size`` x ``size``: PNG is
    lossless and :func:`load_image` would neither convert nor resize it, so the pixels are the same, at a
    fraction of PIL's cost for a small image (PIL's per-file open costs more than the decode).
    Everything else (other modes, sizes, bit depths, formats) returns None for the PIL path.
    """
    if len(data) < 26 or data[:8] != _PNG_SIGNATURE:
        return None
    width, height = struct.unpack(">II", data[16:24])  # IHDR, then bit depth and colour type
    if (width, height) != (size, size) or data[24] != 8 or data[25] != _PNG_COLOR_TYPE.get(channels):
        return None
    try:
        image = _decode_png_fast(torch.frombuffer(bytearray(data), dtype=torch.uint8))
    except RuntimeError:  # a corrupt stream: let PIL raise the error users see
        return None
    return image if tuple(image.shape) == (channels, size, size) else None  # e.g. a tRNS chunk added alpha


def load_image(path: str | Path | Blob, channels: int, size: int) -> Tensor:
    """Decodes one image file (a path, or a :class:`Blob` such as a file inside shards) to uint8
    ``(channels, size, size)``.

    Grayscale and RGB inputs are converted to ``channels`` (1 → luma "L", 3 → "RGB"), so a
    grayscale/RGB mismatch never reaches the model.

    Raises:
        FileNotFoundError: the file is missing.
        ValueError: the file is not a decodable image (names the file).
    """
    source, path = open_source(path, "image")
    with pil_errors(path):
        with Image.open(source) as img:
            return fit_pil(img, channels, size)


@contextmanager
def pil_errors(name: str) -> Iterator[None]:
    """Any failure of PIL's decoders (a corrupt file raises anything from ``OSError`` to ``struct.error``), a
    warning of theirs about the pixel data (``Tag data larger than file``: a corrupt file PIL half-decodes),
    and a header that declares more than ``Image.MAX_IMAGE_PIXELS`` pixels (PIL only warns below twice that,
    then allocates them), as one ``ValueError`` naming the file. Warnings about metadata that is never read
    (EXIF) or about a conversion that is done anyway (palette transparency) pass."""
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("error", category=UserWarning, module=r"PIL\.")
            warnings.filterwarnings("ignore", message=r".*(EXIF|Palette images with Transparency)")
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            yield
    except (Image.DecompressionBombWarning, Image.DecompressionBombError) as e:
        raise ValueError(f"{name}: the image header declares too many pixels ({e}); the file is corrupt or "
                         f"too large for training: resize it") from None
    except Exception as e:  # noqa: BLE001 - PIL's decoders raise many types on corrupt input
        raise ValueError(f"{name} is not a readable image ({type(e).__name__}: {e}); remove it or replace it "
                         f"with a valid image") from e


def fit_pil(img: Image.Image, channels: int, size: int) -> Tensor:
    """A PIL image → uint8 ``(channels, size, size)``: 1 → luma "L", 3 → "RGB", then a bilinear resize (the one
    conversion every image path shares, so files, shard bytes and decoded pixels give the same tensor)."""
    img = img.convert("L" if channels == 1 else "RGB")
    img = img.resize((size, size), Image.Resampling.BILINEAR)
    return v2.functional.pil_to_tensor(img)


_GRAY_MODES = ("1", "L", "LA", "La", "I", "I;16", "I;16B", "I;16L", "I;16N", "F")


def file_pixels(data: bytes, name: str) -> np.ndarray:
    """An image file's bytes → its pixels, uint8 ``(1, H, W)`` for a gray file, ``(3, H, W)`` otherwise.

    What ``mmformer prepare imagefolder --decode`` stores: gray and RGB files (what PNG/JPEG datasets hold)
    are kept in their own mode, so :func:`fit_pixels` gives exactly :func:`load_image`'s pixels; other modes
    (palette, RGBA, 16-bit gray...) are converted to RGB or L first, as ``load_image`` would convert them.

    Raises:
        ValueError: not a decodable image (names it).
    """
    with pil_errors(name):
        with Image.open(io.BytesIO(data)) as img:
            img = img.convert("L" if img.mode in _GRAY_MODES else "RGB")
            x = np.asarray(img)
    return np.ascontiguousarray(x[None] if x.ndim == 2 else x.transpose(2, 0, 1))


def fit_pixels(pixels: np.ndarray, channels: int, size: int) -> Tensor:
    """:func:`file_pixels`' ``(C, H, W)`` → uint8 ``(channels, size, size)``, as :func:`load_image` converts the
    file: a copy when it already fits (the common case for small images), else PIL's conversion and resize."""
    if pixels.shape == (channels, size, size):  # litdata's arrays are its own copies; a read-only view is copied
        return torch.from_numpy(pixels if pixels.flags.writeable else np.array(pixels))
    img = Image.fromarray(pixels[0] if pixels.shape[0] == 1 else np.ascontiguousarray(pixels.transpose(1, 2, 0)))
    return fit_pil(img, channels, size)


def list_images(folder: str | Path) -> list[Path]:
    """Image files directly under ``folder``, sorted by name."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"image folder {folder} does not exist")
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS)


class ImageFileDataset(Dataset):
    """Image files for prediction as role dicts ``{"input": image, "index": i}`` (file ``i`` is ``paths[i]``)."""

    def __init__(self, paths: list[Path], channels: int, size: int, transform: Callable[[Tensor], Tensor]) -> None:
        self.paths, self.channels, self.size, self.transform = paths, channels, size, transform

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> dict[str, Tensor]:
        return {"input": self.transform(load_image(self.paths[i], self.channels, self.size)), "index": torch.tensor(i)}


def folder_classes(folder: str | Path) -> list[str]:
    """Class names of an ImageFolder split: its sub-folder names, sorted (as torchvision does).

    Raises:
        FileNotFoundError: ``folder`` does not exist (expected ``<class>/*.png`` inside).
        ValueError: it has no class sub-folders.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"ImageFolder root {folder.parent} has no {folder.name}/ folder "
                                f"(expected {folder.name}/<class>/*.png)")
    classes = sorted(d.name for d in folder.iterdir() if d.is_dir())
    if not classes:
        raise ValueError(f"{folder} has no class sub-folders")
    return classes


def image_folder_files(folder: str | Path, classes: list[str]) -> list[tuple[Path, int]]:
    """One ImageFolder split ``folder/<class>/*.png`` → ``(path, label)`` per image, class by class, each
    class's files sorted by name; labels index ``classes``.

    Raises:
        FileNotFoundError: ``folder`` does not exist.
        ValueError: a class sub-folder is not in ``classes``.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"ImageFolder split folder {folder} does not exist")
    files = []
    for sub in sorted(d for d in folder.iterdir() if d.is_dir()):
        if sub.name not in classes:
            raise ValueError(f"{sub} is a class not present in train/ (known: {classes})")
        files += [(path, classes.index(sub.name)) for path in list_images(sub)]
    return files


def read_image_folder(folder: str | Path, classes: list[str], channels: int, size: int) -> tuple[Tensor, Tensor]:
    """One ImageFolder split ``folder/<class>/*.png`` → ``(images (N, channels, size, size) uint8, labels (N,))``.

    Labels index ``classes``; files are read class by class, each class's files sorted by name.

    Raises:
        FileNotFoundError: ``folder`` does not exist.
        ValueError: a class sub-folder is not in ``classes``, or no image is found.
    """
    files = image_folder_files(folder, classes)
    if not files:
        raise ValueError(f"no images found under {folder}")
    return torch.stack([load_image(p, channels, size) for p, _ in files]), torch.tensor([y for _, y in files])

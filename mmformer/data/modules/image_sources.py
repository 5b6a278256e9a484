"""Images decoded per sample instead of held in memory: from prepared shards or an ImageFolder tree.

:class:`LazyImageDataset` reads row ``rows[i]`` of a source through a picklable reader (``reader(row)``
→ ``(image (C, H, W) uint8, label)``), converts it exactly as the in-memory path converts its arrays
(channels, then resize), and transforms it seeded by the virtual index, as :class:`TensorImageDataset`
does — so for the same source, lazy and in-memory batches are identical, while memory stays flat and
DataLoader workers decode in parallel.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Callable, Protocol

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from torch import Tensor
from torch.utils.data import Dataset
from torchvision.transforms import v2

from mmformer.data.common.sampling import seeded_call
from mmformer.data.readers.image_files import decode_png_as_is, fit_pil, fit_pixels, load_image
from mmformer.data.shards.dataset import ShardView
from mmformer.data.shards.format import ShardError
from mmformer.data.shards.reading import read_columns


class ImageReader(Protocol):
    """Row → ``(image (C, H, W) uint8 at the model's channels and size, label)``."""

    def __len__(self) -> int: ...

    def __call__(self, row: int) -> tuple[Tensor, int]: ...


def match_channels(images: Tensor, channels: int) -> Tensor:
    """Converts uint8 ``(N, C, H, W)`` to ``channels``: gray → RGB repeats, RGB → gray uses luma."""
    c = images.shape[1]
    if c == channels:
        return images
    if c == 1 and channels == 3:
        return images.expand(-1, 3, -1, -1).contiguous()
    if c == 3 and channels == 1:
        return v2.functional.rgb_to_grayscale(images)
    raise ValueError(f"cannot convert {c}-channel images to {channels} channels")


def fit_image(image: Tensor, channels: int, size: int) -> Tensor:
    """uint8 ``(C, H, W)`` → ``(channels, size, size)``, the conversions of the in-memory path, per image."""
    x = match_channels(image[None], channels)
    if x.shape[-2:] != (size, size):
        x = v2.functional.resize(x, [size, size], antialias=True)
    return x[0]


def decode_bytes(data: bytes, channels: int, size: int, name: str) -> Tensor:
    """Encoded image bytes → uint8 ``(channels, size, size)``, decoded as :func:`load_image` decodes files."""
    fast = decode_png_as_is(data, channels, size)
    if fast is not None:
        return fast
    try:
        with Image.open(io.BytesIO(data)) as img:
            return fit_pil(img, channels, size)
    except (UnidentifiedImageError, OSError, SyntaxError) as e:
        raise ShardError(f"{name} is not a readable image ({e})") from e


class ShardImages:
    """Images and labels of prepared ``image_classification`` shards (see ``mmformer prepare``).

    Images are stored as the files' bytes (decoded here), as the files' pixels (``prepare --decode``:
    converted here as :func:`load_image` converts the file) or as raw arrays (IDX: converted as the
    in-memory IDX path converts them). Labels come from ``columns.json`` once, not from every read.
    """

    def __init__(self, view: ShardView, channels: int, size: int) -> None:
        self.view, self.channels, self.size = view, channels, size
        self.stored = ("encoded" if view.info.fields["image"] == "encoded"
                       else "pixels" if view.info.meta.get("pixels") == "file" else "array")
        labels = read_columns(view, ["label"])["label"] if "label" in view.info.columns else None
        self.labels = None if labels is None else [int(y) for y in labels]

    def __len__(self) -> int:
        return len(self.view)

    def __call__(self, row: int) -> tuple[Tensor, int]:
        sample = self.view[row]
        image = sample["image"]
        if self.stored == "encoded":  # litdata may hand bytes back as a uint8 array
            x = decode_bytes(image if isinstance(image, bytes) else np.asarray(image).tobytes(), self.channels, self.size, f"{self.view.uri} sample {row}")
        elif self.stored == "pixels":
            x = fit_pixels(np.asarray(image), self.channels, self.size)
        else:
            x = fit_image(torch.from_numpy(np.array(image)), self.channels, self.size)
        return x, int(sample["label"]) if self.labels is None else self.labels[row]


class FolderImages:
    """Image files and their labels (an ImageFolder split, listed but not decoded)."""

    def __init__(self, paths: list[Path], labels: list[int], channels: int, size: int) -> None:
        self.paths, self.labels, self.channels, self.size = paths, labels, channels, size

    def __len__(self) -> int:
        return len(self.paths)

    def __call__(self, row: int) -> tuple[Tensor, int]:
        return load_image(self.paths[row], self.channels, self.size), self.labels[row]


class LazyImageDataset(Dataset):
    """Rows ``rows`` of a reader, transformed per sample; a sample is ``{"input": image, "label": int, "index": int}``.

    Index ``v >= N`` reads sample ``v % N`` (the virtual indices of ``ResumableSampler``); with ``seed``
    the transform of index ``v`` is seeded by ``seed + v``.

    Args:
        reader: row → (image, label).
        rows: ``(N,)`` the reader rows of this split (a train/validation carve).
        transform: per-image transform.
        seed: augmentation seed, or None.
    """

    def __init__(self, reader: ImageReader, rows: Tensor, transform: Callable[[Tensor], Tensor] | None = None,
                 seed: int | None = None) -> None:
        self.reader, self.rows, self.transform, self.seed = reader, rows, transform, seed
        self._rows: list[int] = rows.tolist()  # plain ints: indexing a tensor per sample is a tensor op each time

    def __len__(self) -> int:
        return len(self._rows)

    def __getitem__(self, v: int) -> dict[str, Tensor | int]:
        return self.__getitems__([v])[0]

    def __getitems__(self, vs: list[int]) -> list[dict[str, Tensor | int]]:
        """A batch's samples (the DataLoader calls this once per batch): every read first, then every
        transform — the same samples as one by one, cheaper on a CPU (the reader's and the transform's code
        each stay in cache instead of evicting each other per sample)."""
        n = len(self._rows)
        read = [self.reader(self._rows[v % n]) for v in vs]
        out = []
        for v, (x, y) in zip(vs, read):
            if self.transform is not None:
                x = self.transform(x) if self.seed is None else seeded_call(self.transform, x, self.seed + v)
            out.append({"input": x, "label": y, "index": v % n})  # ints: collated into one tensor per batch
        return out

    def chunks(self) -> Tensor | None:
        """``(N,)`` the shard chunk of each sample (for chunk-aware shuffling), None for files."""
        return self.reader.view.chunk_ids(self.rows) if isinstance(self.reader, ShardImages) else None


def image_stats(reader: ImageReader, n: int = 10000) -> tuple[list[float], list[float]]:
    """Per-channel mean and std of the first ``n`` images in ``[0, 1]``: the statistics the in-memory path
    takes from its first 10000 training images, here decoded one by one."""
    stats = torch.stack([reader(i)[0] for i in range(min(n, len(reader)))]).float().div(255)
    return stats.mean(dim=(0, 2, 3)).tolist(), stats.std(dim=(0, 2, 3)).clamp_min(1e-3).tolist()

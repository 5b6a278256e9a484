"""Image-classification DataModules: a shared base plus in-memory tensor datasets.

Batches are ``(images (B, C, H, W) float32 normalized, labels (B,) long)``. The validation split
is carved from the training data (seeded), never from the test set.
"""

from __future__ import annotations

from typing import Callable, Sequence

import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from mmformer.data.sampling import ResumableDataModule, ResumableSampler, UnpaddedDistributedSampler, seeded_call
from torchvision.transforms import v2


class TensorImageDataset(Dataset):
    """``images (N, C, H, W)`` uint8 and ``labels (N,)`` held in memory, transformed per sample.

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

    def __getitem__(self, v: int) -> tuple[Tensor, Tensor]:
        i = v % len(self)
        x = self.images[i]
        if self.transform is not None:
            x = self.transform(x) if self.seed is None else seeded_call(self.transform, x, self.seed + v)
        return x, self.labels[i]


def check_labels(labels: Tensor, num_classes: int, source: str) -> None:
    """Labels must lie in ``[0, num_classes)``; the message names the first bad value and its index."""
    bad = ((labels < 0) | (labels >= num_classes)).nonzero()
    if len(bad):
        i = int(bad[0])
        raise ValueError(
            f"{source}: label {int(labels[i])} at index {i} is out of range for {num_classes} classes "
            f"(expected 0..{num_classes - 1})"
        )


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


class ImageClassificationData(ResumableDataModule):
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
    ) -> None:
        super().__init__()
        if not 0.0 <= val_fraction < 1.0:
            raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction}")
        self.image_size, self.channels, self.batch_size = image_size, channels, batch_size
        self.val_fraction, self.augment, self.crop_padding, self.hflip = val_fraction, augment, crop_padding, hflip
        self.num_workers, self.seed, self.predict_dir = num_workers, seed, predict_dir
        self._resume: tuple[int, int] | None = None
        self.mean: Sequence[float] = (0.5,) * channels
        self.std: Sequence[float] = (0.5,) * channels

    # --- what a source provides ------------------------------------------------------------
    def load(self, split: str) -> tuple[Tensor, Tensor]:
        """``split`` in {"train", "test"} → ``(images (N, C, H, W) uint8, labels (N,))``."""
        raise NotImplementedError

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

    def transforms(self, train: bool) -> v2.Compose:
        steps: list[Callable] = []
        if train and self.augment:
            steps.append(v2.RandomCrop(self.image_size, padding=self.crop_padding))
            if self.hflip:
                steps.append(v2.RandomHorizontalFlip())
        steps += [v2.ToDtype(torch.float32, scale=True), v2.Normalize(self.mean, self.std)]
        return v2.Compose(steps)

    def load_images(self, paths: Sequence[str]) -> Tensor:
        """Image files → the normalized ``(B, C, H, W)`` batch the model expects (call ``setup`` first)."""
        from mmformer.data.image_files import load_image

        tf = self.transforms(train=False)
        return torch.stack([tf(load_image(p, self.channels, self.image_size)) for p in paths])

    def setup(self, stage: str | None = None) -> None:
        if getattr(self, "_ready", False):
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

    def _eval_loader(self, ds: Dataset) -> DataLoader:
        sampler = None
        t = self.trainer
        if t is not None and t.world_size > 1:  # exact metrics under DDP: no repeated samples
            sampler = UnpaddedDistributedSampler(ds, t.world_size, t.global_rank)  # type: ignore[arg-type]
        return DataLoader(ds, batch_size=self.batch_size, sampler=sampler, num_workers=self.num_workers,
                          persistent_workers=self.num_workers > 0)

    def train_dataloader(self) -> DataLoader:
        sampler = ResumableSampler(len(self.train_set), self.seed, shuffle=True)
        if self._resume is not None:
            sampler.resume_at(*self._resume)
        return DataLoader(self.train_set, batch_size=self.batch_size, sampler=sampler, num_workers=self.num_workers,
                          persistent_workers=self.num_workers > 0)

    def val_dataloader(self) -> DataLoader:
        return self._eval_loader(self.val_set)

    def test_dataloader(self) -> DataLoader:
        return self._eval_loader(self.test_set)

    def predict_dataloader(self) -> DataLoader:
        from mmformer.data.image_files import ImageFileDataset, list_images

        if self.predict_dir is None:
            raise ValueError("set data.init_args.predict_dir to a folder of images to predict")
        files = list_images(self.predict_dir)
        if not files:
            raise ValueError(f"no image files in {self.predict_dir}")
        ds = ImageFileDataset(files, self.channels, self.image_size, self.transforms(train=False))
        return self._eval_loader(ds)

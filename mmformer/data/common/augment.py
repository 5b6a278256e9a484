"""The image classifiers' per-sample augmentation without torchvision v2's per-call dispatch.

``v2.Compose([RandomCrop(size, padding), RandomHorizontalFlip(), ToDtype(float32, scale=True),
Normalize(mean, std)])`` spends most of its time on a small image in Python dispatch (type checks,
pytree flattening, parameter dicts) rather than arithmetic; DataLoader workers then take
that from training on a small machine. :class:`CropFlipNormalize` does the same arithmetic directly,
drawing the same random numbers from torch's default generator in the same order (crop ``top``, then
``left``, then the flip's ``rand(1)``), so its output is bit-identical to the v2 pipeline under the same
seed (tested), and the seeded, resumable augmentation of :func:`mmformer.data.common.sampling.seeded_call`
is unchanged.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


class CropFlipNormalize:
    """uint8 ``(C, H, W)`` → float32 ``(C, size, size)``: optional zero-padded random crop and horizontal
    flip (training), then ``x / 255`` normalized by per-channel ``mean`` and ``std``.

    Args:
        size: output side; the input is padded by ``padding`` on every border, then cropped to it.
        mean, std: per-channel statistics of ``x / 255`` (one value per channel).
        crop: random crop (else the image passes uncropped and must already be ``size``).
        padding: zero padding on each border before the random crop.
        hflip: flip horizontally with probability 1/2.
    """

    def __init__(self, size: int, mean: list[float], std: list[float], crop: bool = False, padding: int = 0,
                 hflip: bool = False) -> None:
        if len(mean) != len(std) or not all(s > 0 for s in std):
            raise ValueError(f"mean and std need one value per channel and std > 0, got {mean} and {std}")
        self.size, self.crop, self.padding, self.hflip = size, crop, padding, hflip
        # (C, 1, 1) float32: the tensors v2.Normalize builds from the same lists on every call
        self.mean = torch.as_tensor(mean, dtype=torch.float32).view(-1, 1, 1)
        self.std = torch.as_tensor(std, dtype=torch.float32).view(-1, 1, 1)

    def __call__(self, image: Tensor) -> Tensor:
        x = image
        if self.crop:
            h, w = x.shape[-2] + 2 * self.padding, x.shape[-1] + 2 * self.padding
            if h < self.size or w < self.size:
                raise ValueError(f"cannot crop {self.size}x{self.size} from a padded {h}x{w} image")
            # v2.RandomCrop draws top, then left, and only along an axis with room to move
            top = int(torch.randint(0, h - self.size + 1, size=())) if h > self.size else 0
            left = int(torch.randint(0, w - self.size + 1, size=())) if w > self.size else 0
            if self.padding:
                x = F.pad(x, (self.padding,) * 4)  # constant 0, as v2's default fill
            x = x[..., top:top + self.size, left:left + self.size]
        if self.hflip and not bool(torch.rand(1) >= 0.5):  # v2.RandomHorizontalFlip's test, p = 0.5
            x = x.flip(-1)
        # ToDtype(scale=True) multiplies by the reciprocal; Normalize subtracts, then divides in place
        x = x.to(torch.float32).mul_(1.0 / 255)
        return x.sub(self.mean).div_(self.std)

    def __repr__(self) -> str:
        return (f"CropFlipNormalize(size={self.size}, crop={self.crop}, padding={self.padding}, hflip={self.hflip}, "
                f"mean={self.mean.flatten().tolist()}, std={self.std.flatten().tolist()})")

"""CropFlipNormalize is torchvision v2's crop/flip/normalize pipeline, bit for bit, under the same seed."""

from __future__ import annotations

import pytest
import torch
from torchvision.transforms import v2

from mmformer.data.common.augment import CropFlipNormalize
from mmformer.data.common.sampling import seeded_call


def _reference(size: int, mean: list[float], std: list[float], crop: bool, padding: int, hflip: bool) -> v2.Compose:
    steps = []
    if crop:
        steps.append(v2.RandomCrop(size, padding=padding or None))
        if hflip:
            steps.append(v2.RandomHorizontalFlip())
    return v2.Compose([*steps, v2.ToDtype(torch.float32, scale=True), v2.Normalize(mean, std)])


@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize(("crop", "padding", "hflip"), [(True, 2, True), (True, 4, False), (True, 0, True),
                                                        (False, 0, False)])
def test_equals_the_v2_pipeline_for_every_seed(channels: int, crop: bool, padding: int, hflip: bool) -> None:
    mean, std = [0.3, 0.5, 0.4][:channels], [0.2, 0.25, 0.3][:channels]
    ours, ref = CropFlipNormalize(16, mean, std, crop, padding, hflip), _reference(16, mean, std, crop, padding, hflip)
    images = torch.randint(0, 256, (40, channels, 16, 16), dtype=torch.uint8)
    flips = crops = 0
    for seed, x in enumerate(images):
        a, b = seeded_call(ours, x, seed), seeded_call(ref, x, seed)
        assert a.dtype == torch.float32 and a.shape == (channels, 16, 16)
        assert torch.equal(a, b), f"seed {seed}"
        plain = seeded_call(CropFlipNormalize(16, mean, std), x, seed)
        flips += torch.equal(a, plain.flip(-1)) and not torch.equal(a, plain)
        crops += not torch.equal(a, plain)
    if crop and padding:
        assert crops > 20  # the augmentation does something, not only in agreement with the reference
    if hflip and crop and not padding:
        assert 5 < flips < 35


def test_a_larger_input_is_cropped_without_padding() -> None:
    x = torch.randint(0, 256, (3, 20, 20), dtype=torch.uint8)
    ours, ref = CropFlipNormalize(16, [0.5] * 3, [0.2] * 3, crop=True), _reference(16, [0.5] * 3, [0.2] * 3, True, 0, False)
    assert torch.equal(seeded_call(ours, x, 3), seeded_call(ref, x, 3))


def test_bad_statistics_and_sizes_are_named() -> None:
    with pytest.raises(ValueError, match="one value per channel and std > 0"):
        CropFlipNormalize(16, [0.5], [0.0])
    with pytest.raises(ValueError, match="cannot crop 16x16 from a padded 12x12 image"):
        CropFlipNormalize(16, [0.5], [0.2], crop=True, padding=1)(torch.zeros(1, 10, 10, dtype=torch.uint8))

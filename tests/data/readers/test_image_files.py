"""The direct PNG decode used for shards gives exactly what the PIL path gives, and steps aside otherwise;
pixels decoded at prepare time (``prepare --decode``) convert to exactly what the file converts to."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from mmformer.data.readers.image_files import decode_png_as_is, file_pixels, fit_pixels, load_image


def _encode(image: Image.Image, fmt: str = "PNG") -> bytes:
    buf = io.BytesIO()
    image.save(buf, fmt)
    return buf.getvalue()


@pytest.mark.parametrize("mode, channels", [("L", 1), ("RGB", 3)])
def test_png_of_the_right_mode_and_size_decodes_as_load_image_does(tmp_path: Path, mode: str, channels: int) -> None:
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, (12, 12) if mode == "L" else (12, 12, 3), dtype=np.uint8)
    data = _encode(Image.fromarray(pixels, mode))
    (tmp_path / "a.png").write_bytes(data)
    fast = decode_png_as_is(data, channels, 12)
    assert fast is not None and fast.dtype == torch.uint8
    assert torch.equal(fast, load_image(tmp_path / "a.png", channels, 12))


def test_anything_pil_would_convert_or_resize_goes_to_pil() -> None:
    rng = np.random.default_rng(1)
    gray = Image.fromarray(rng.integers(0, 256, (12, 12), dtype=np.uint8), "L")
    rgb = Image.fromarray(rng.integers(0, 256, (12, 12, 3), dtype=np.uint8), "RGB")
    assert decode_png_as_is(_encode(gray), 1, 16) is None  # another size: PIL resizes
    assert decode_png_as_is(_encode(rgb), 1, 12) is None  # RGB for a gray model: PIL converts (luma)
    assert decode_png_as_is(_encode(gray), 3, 12) is None
    assert decode_png_as_is(_encode(gray.convert("P")), 1, 12) is None  # palette
    assert decode_png_as_is(_encode(gray.convert("I;16")), 1, 12) is None  # 16-bit
    assert decode_png_as_is(_encode(rgb, "JPEG"), 3, 12) is None  # lossy formats always decode with PIL
    corrupt = bytearray(_encode(gray))
    corrupt[40:60] = bytes(20)
    assert decode_png_as_is(bytes(corrupt), 1, 12) is None  # PIL then raises the error users see


@pytest.mark.parametrize("mode, fmt", [(m, "PNG") for m in ("L", "RGB", "P", "RGBA", "LA")] +
                         [(m, "JPEG") for m in ("L", "RGB")])  # JPEG holds L and RGB only
def test_decoded_pixels_convert_as_the_file_does(tmp_path: Path, mode: str, fmt: str) -> None:
    rng = np.random.default_rng(2)
    rgb = Image.fromarray(rng.integers(0, 256, (10, 13, 3), dtype=np.uint8), "RGB")
    image = rgb.convert(mode) if mode != "RGBA" else Image.fromarray(rng.integers(0, 256, (10, 13, 4), dtype=np.uint8), "RGBA")
    path = tmp_path / f"a.{fmt.lower()}"
    path.write_bytes(_encode(image, fmt))
    pixels = file_pixels(path.read_bytes(), str(path))
    assert pixels.dtype == np.uint8 and pixels.shape == ((1 if mode in ("L", "LA") else 3), 10, 13)
    for channels in (1, 3):
        for size in (8, 16):  # every case resizes (13x10 is never square)
            assert torch.equal(fit_pixels(pixels, channels, size), load_image(path, channels, size)), (channels, size)
    square = Image.fromarray(rng.integers(0, 256, (8, 8), dtype=np.uint8), "L")
    sq = file_pixels(_encode(square), "sq.png")
    assert torch.equal(fit_pixels(sq, 1, 8), torch.from_numpy(np.array(square))[None]), "the no-conversion copy"


def test_undecodable_bytes_are_named() -> None:
    with pytest.raises(ValueError, match="broken.png is not a readable image"):
        file_pixels(b"not an image", "broken.png")

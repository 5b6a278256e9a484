"""A second contrastive corpus of another domain: small glyphs (the ten digits) drawn on coloured,
textured backgrounds, with captions naming the glyph and both colours ("the digit 7 in white on a
green background").

The caption's key attribute, the glyph, covers a small part of the image (its ink box is 12-20 px
high in a 48x48 image: the box is ~4-10 % of the image, the strokes themselves far less), while the
background fills the rest: a model can lower the contrastive loss a long way by matching the
background colour alone. This is the situation of OpenCLIP TSVs of glyphs on coloured backgrounds,
rebuilt offline so the recipe can be measured on it (docs/tasks/contrastive.md).

Each image: a background colour (jittered per image, a gentle linear gradient and Gaussian pixel
noise), one digit in another colour with enough contrast, at a random position and size. Digits are
drawn with Pillow's bundled font (``ImageFont.load_default(size=...)``), so no font package is needed.
Everything is drawn from a seeded generator per split, so the same settings give the same files.

Output, written once into ``data/glyph_captions_<hash of the settings>/``, in the manifest format
``mmformer.data.ManifestData`` reads (file paths relative to the manifest)::

    train.jsonl val.jsonl test.jsonl
        {"image": "train/00042.png", "caption": "...", "glyph": "7", "color": "white",
         "background": "green", "size": "small", "position": "top left"}
    train/ val/ test/          RGB PNG files, image_size x image_size

``glyph``, ``color`` and ``background`` are label fields: ``zeroshot: {glyph: ["the digit {}"]}`` makes
``mmformer test`` report ``test/zeroshot_glyph_acc`` (chance 0.10). Training captions vary their wording
and leave out the size or the position at random; validation and test captions name every attribute and
are unique within their split (one right caption per retrieval query).
"""

from __future__ import annotations

import sys
from dataclasses import asdict, dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from corpora.manifests import build_once, cache_folder, write_jsonl

SPLITS = ("train", "val", "test")
GLYPHS = tuple("0123456789")
COLORS = {  # name → RGB; glyph and background: two different ones with enough contrast (MIN_CONTRAST, MIN_LUMA)
    "black": (20, 20, 20), "white": (240, 240, 240), "red": (210, 30, 30), "yellow": (240, 220, 40),
    "green": (30, 150, 50), "blue": (30, 60, 210), "purple": (130, 40, 170), "orange": (245, 140, 20),
}
COLOR_NAMES = tuple(COLORS)
SIZES = ("small", "large")  # ink height below / from LARGE_FROM px (at 48 px; scaled with image_size)
POSITIONS = ("top left", "top", "top right", "left", "center", "right", "bottom left", "bottom", "bottom right")
MIN_CONTRAST = 160.0  # least RGB distance between glyph and background colours
MIN_LUMA = 50.0  # and least luminance difference (drops yellow on white, red on green, blue on black)
RENDER_VERSION = 1  # bump when drawing or captions change, so caches rebuild
TEMPLATES = (  # {g} glyph, {c} glyph colour, {b} background colour, {w} ' small'/' large' or '', {p} ' at the top'
    "the{w} digit {g} in {c} on a {b} background{p}",
    "a{w} {c} {g} on {b}{p}",
    "a{w} {c} digit {g}{p}, {b} background",
    "a {b} picture with a{w} {c} number {g}{p}",
    "the{w} number {g} written in {c} over {b}{p}",
)


@dataclass(frozen=True)
class GlyphCaptionsConfig:
    """What the corpus holds; every field enters the cache hash."""

    image_size: int = 48  # side of the square RGB images, in pixels
    num_train: int = 16_000  # training images
    num_eval: int = 1_000  # images in each of val and test
    min_height: int = 12  # the glyph's ink box height range, in pixels at image_size 48 (scaled otherwise)
    max_height: int = 20
    noise: float = 12.0  # std of the Gaussian pixel noise on the background (0-255 scale)
    drop_detail: float = 0.5  # training captions leave out the size, and separately the position, this often
    seed: int = 0


@lru_cache(maxsize=None)  # ~12 sizes; parsing the bundled font per image was most of the render time
def _font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    """Pillow's bundled font at ``size`` px (FreeType build of Pillow >= 10.1)."""
    return ImageFont.load_default(size=size)


@lru_cache(maxsize=1)  # fixed by COLORS: computed once, not per image
def colour_pairs() -> list[tuple[int, int]]:
    """(glyph colour, background colour) index pairs far enough apart to read the glyph."""
    rgb = np.array(list(COLORS.values()), dtype=float)
    luma = rgb @ np.array([0.299, 0.587, 0.114])
    return [(g, b) for g in range(len(rgb)) for b in range(len(rgb))
            if g != b and np.linalg.norm(rgb[g] - rgb[b]) >= MIN_CONTRAST and abs(luma[g] - luma[b]) >= MIN_LUMA]


def caption(rng: np.random.Generator, attrs: dict[str, str], drop: float) -> str:
    """A caption naming ``attrs`` (glyph, color, background, size, position) with a random template;
    size and position are each left out with chance ``drop`` (0: a full caption)."""
    template = TEMPLATES[int(rng.integers(len(TEMPLATES)))]
    keep_size, keep_pos = rng.random() >= drop, rng.random() >= drop
    where = "" if not keep_pos else " in the center" if attrs["position"] == "center" else f" at the {attrs['position']}"
    return template.format(g=attrs["glyph"], c=attrs["color"], b=attrs["background"],
                           w=f" {attrs['size']}" if keep_size else "", p=where)


def render(rng: np.random.Generator, cfg: GlyphCaptionsConfig) -> tuple[np.ndarray, dict[str, str], tuple[int, int, int, int]]:
    """One image: ``(uint8 (S, S, 3), attributes, glyph ink box (x0, y0, x1, y1))``."""
    s = cfg.image_size
    scale = s / 48
    pairs = colour_pairs()
    g_col, b_col = pairs[int(rng.integers(len(pairs)))]
    glyph = GLYPHS[int(rng.integers(len(GLYPHS)))]
    height = int(rng.integers(round(cfg.min_height * scale), round(cfg.max_height * scale) + 1))
    # background: jittered colour + linear gradient + pixel noise
    base = np.array(COLORS[COLOR_NAMES[b_col]], dtype=float) + rng.uniform(-15, 15, 3)
    ramp = np.linspace(-1.0, 1.0, s)
    angle = rng.uniform(0, 2 * np.pi)
    grad = (np.cos(angle) * ramp[None, :] + np.sin(angle) * ramp[:, None]) * rng.uniform(0, 20)
    bg = base[None, None, :] + grad[:, :, None] + rng.normal(0, cfg.noise, (s, s, 3))
    img = Image.fromarray(np.clip(bg, 0, 255).astype(np.uint8))
    # glyph: font size chosen so the ink box is `height` px high, placed fully inside the image
    font = _font(max(4, round(height / 0.72)))
    x0, y0, x1, y1 = ImageDraw.Draw(img).textbbox((0, 0), glyph, font=font)
    w, h = x1 - x0, y1 - y0
    left = int(rng.integers(1, s - w)) if s - w > 1 else 0
    top = int(rng.integers(1, s - h)) if s - h > 1 else 0
    ink = np.array(COLORS[COLOR_NAMES[g_col]], dtype=float) + rng.uniform(-15, 15, 3)
    ImageDraw.Draw(img).text((left - x0, top - y0), glyph, font=font,
                             fill=tuple(int(v) for v in np.clip(ink, 0, 255)))
    cx, cy = (left + w / 2) / s, (top + h / 2) / s
    position = POSITIONS[3 * min(int(cy * 3), 2) + min(int(cx * 3), 2)]
    size = SIZES[int(height >= round(16 * scale))]
    attrs = {"glyph": glyph, "color": COLOR_NAMES[g_col], "background": COLOR_NAMES[b_col],
             "size": size, "position": position}
    return np.asarray(img), attrs, (left, top, left + w, top + h)


def build_split(cfg: GlyphCaptionsConfig, split: str) -> tuple[list[np.ndarray], list[dict[str, str]]]:
    """Images ``(S, S, 3)`` uint8 and their rows' attributes + caption; val/test captions are unique."""
    n = cfg.num_train if split == "train" else cfg.num_eval
    rng = np.random.default_rng([cfg.seed, SPLITS.index(split)])
    images, rows, seen = [], [], set()
    full = split != "train"
    tries = 0
    while len(images) < n:
        tries += 1
        if tries > 50 * n + 100:
            raise ValueError(f"cannot draw {n} distinct {split} captions; lower num_eval")
        image, attrs, _ = render(rng, cfg)
        if full:
            key = tuple(attrs.values())
            if key in seen:  # one right caption per retrieval query
                continue
            seen.add(key)
        text = caption(rng, attrs, 0.0 if full else cfg.drop_detail)
        images.append(image)
        rows.append({**attrs, "caption": text})
    return images, rows


def build(data_dir: str | Path = "data", cfg: GlyphCaptionsConfig = GlyphCaptionsConfig()) -> dict[str, Path]:
    """Renders (once) the glyph images as PNGs; returns ``{"train"|"val"|"test": manifest path}``.

    Args:
        data_dir: where the settings-hashed folder goes.
        cfg: sizes, glyph heights, noise, caption detail and the seed.
    """
    from tqdm import tqdm

    settings = {"v": 1, "render_v": RENDER_VERSION, **asdict(cfg)}

    def make(tmp: Path, _final: Path) -> dict:
        stats = {}
        for split in SPLITS:
            images, attrs = build_split(cfg, split)
            (tmp / split).mkdir()
            rows = []
            for i in tqdm(range(len(images)), desc=f"png {split}", file=sys.stderr, mininterval=2.0):
                name = f"{split}/{i:05d}.png"
                Image.fromarray(images[i]).save(tmp / name)
                rows.append({"image": name, **attrs[i]})
            stats[split] = {"images": write_jsonl(tmp / f"{split}.jsonl", rows),
                            "unique_captions": len({r["caption"] for r in rows})}
        return stats

    return build_once(cache_folder(data_dir, "glyph_captions", settings), SPLITS, make, settings)

"""A second image-classification corpus of another domain: printed lowercase letters, rendered from the
fonts that ship inside the matplotlib and Pillow packages, with test images drawn from fonts never seen
in training.

Ten classes, ``a b d e g h n p q u``, chosen to be confusable: ``b d p q`` are mirror images of each other
(the ImageFolder recipe must run with ``hflip: false``), ``n``/``u`` and ``h``/``n`` differ by a stroke, and
``a``/``g`` have one- and two-storey forms in different fonts. Fonts: the DejaVu Sans / Sans Mono / Serif
and STIX General families (four styles each) and six Computer Modern faces from ``matplotlib/mpl-data``,
plus Pillow's bundled Aileron (``ImageFont.load_default``) — 23 faces, no font package needed. Six faces
(:data:`TEST_FONTS`, one or more per family) are held out for the test split; train uses the other 17.

Each image (grayscale, ``image_size`` px, drawn at twice the size and downsampled): a random face, a font
size from ``em_range`` of the canvas, a stroke thickening of 0-2 px (0-1 below 0.75 em), a rotation within
±``max_rotation``°, a random position (the glyph kept whole), a dark background and a bright ink level drawn
per image, with probability ``clutter`` a faint stray line, with probability 0.3 a slight blur, and Gaussian
pixel noise.
Every draw comes from a generator seeded by ``(seed, split)``, so the same settings give the same files.

Output, written once into ``data/printed_letters_<hash of the settings>/``: the ImageFolder tree that
``mmformer.data.ImageFolderData`` reads, plus one JSONL row per image naming its face::

    train/<letter>/00042.png   test/<letter>/00042.png
    train.jsonl test.jsonl     {"image": "train/b/00042.png", "label": "b", "font": "cmr10"}

There is no ``val/`` folder: ``ImageFolderData`` carves validation from ``train/`` (``val_fraction``, seeded),
so validation images share the training faces and only the test split measures held-out faces.
"""

from __future__ import annotations

import sys
from dataclasses import asdict, dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageFont

from corpora.manifests import build_once, cache_folder, write_jsonl

SPLITS = ("train", "test")
CLASSES = tuple("abdeghnpqu")
PILLOW_FONT = "Aileron"  # Pillow's bundled FreeType face, loaded by ImageFont.load_default(size=...)
FONTS = (  # faces in matplotlib/mpl-data/fonts/ttf (file stem), plus PILLOW_FONT
    "DejaVuSans", "DejaVuSans-Bold", "DejaVuSans-Oblique", "DejaVuSans-BoldOblique",
    "DejaVuSansMono", "DejaVuSansMono-Bold", "DejaVuSansMono-Oblique", "DejaVuSansMono-BoldOblique",
    "DejaVuSerif", "DejaVuSerif-Bold", "DejaVuSerif-Italic", "DejaVuSerif-BoldItalic",
    "STIXGeneral", "STIXGeneralBol", "STIXGeneralItalic", "STIXGeneralBolIta",
    "cmr10", "cmb10", "cmss10", "cmti10", "cmtt10", "cmmi10", PILLOW_FONT,
)
TEST_FONTS = ("DejaVuSans-BoldOblique", "DejaVuSansMono-Bold", "DejaVuSerif-Italic", "STIXGeneralBol", "cmss10",
              PILLOW_FONT)
RENDER_VERSION = 1  # bump when the drawing changes, so caches rebuild


@dataclass(frozen=True)
class PrintedLettersConfig:
    """What the corpus holds; every field enters the cache hash."""

    image_size: int = 28  # side of the square grayscale images, in pixels
    train_per_class: int = 2_000  # training images per letter (validation is carved from these)
    test_per_class: int = 200  # test images per letter
    test_fonts: tuple[str, ...] = TEST_FONTS  # faces used only by the test split; the rest train
    em_range: tuple[float, float] = (0.55, 0.95)  # font size (em) as a share of the canvas
    max_rotation: float = 20.0  # degrees either way
    noise: float = 25.0  # the Gaussian pixel noise std is drawn from [0, noise] per image (0-255 scale)
    clutter: float = 0.3  # chance of a faint stray line
    seed: int = 0


def font_dir() -> Path:
    """``matplotlib/mpl-data/fonts/ttf``: the TrueType faces matplotlib installs with itself."""
    import matplotlib

    return Path(matplotlib.get_data_path()) / "fonts" / "ttf"


def check_font(name: str) -> None:
    """Raises ValueError unless ``name`` is a known face that holds every letter of :data:`CLASSES`."""
    if name not in FONTS:
        raise ValueError(f"unknown font {name!r}; choose from {list(FONTS)}")
    if name == PILLOW_FONT:
        return
    path = font_dir() / f"{name}.ttf"
    if not path.is_file():
        raise FileNotFoundError(f"font {path} not found (it ships with matplotlib >= 3.8)")
    from fontTools.ttLib import TTFont  # a matplotlib dependency

    cmap = TTFont(path).getBestCmap() or {}
    missing = [c for c in CLASSES if ord(c) not in cmap]
    if missing:
        raise ValueError(f"font {name} has no glyph for {missing}")


@lru_cache(maxsize=None)
def _font(name: str, size: int) -> ImageFont.FreeTypeFont:
    if name == PILLOW_FONT:
        return ImageFont.load_default(size=size)  # type: ignore[return-value]
    return ImageFont.truetype(str(font_dir() / f"{name}.ttf"), size)


def split_fonts(cfg: PrintedLettersConfig, split: str) -> tuple[str, ...]:
    """The faces ``split`` draws from: the held-out ones for test, the others for train."""
    unknown = [f for f in cfg.test_fonts if f not in FONTS]
    if unknown:
        raise ValueError(f"test_fonts {unknown} are not among the known fonts {list(FONTS)}")
    test = tuple(f for f in FONTS if f in cfg.test_fonts)
    train = tuple(f for f in FONTS if f not in cfg.test_fonts)
    if not test or not train:
        raise ValueError(f"test_fonts must hold out some but not all of the {len(FONTS)} fonts, got {cfg.test_fonts}")
    return test if split == "test" else train


def glyph_mask(letter: str, font: str, em: int, stroke: int = 0) -> np.ndarray:
    """The letter's ink as a uint8 mask cropped to its box (a clean, upright render)."""
    f = _font(font, em)
    x0, y0, x1, y1 = ImageDraw.Draw(Image.new("L", (1, 1))).textbbox((0, 0), letter, font=f, stroke_width=stroke)
    canvas = Image.new("L", (x1 - x0 + 4, y1 - y0 + 4), 0)
    ImageDraw.Draw(canvas).text((2 - x0, 2 - y0), letter, font=f, fill=255, stroke_width=stroke, stroke_fill=255)
    box = canvas.getbbox()
    if box is None:
        raise ValueError(f"font {font} draws no ink for {letter!r}")
    return np.asarray(canvas.crop(box))


def render(
    rng: np.random.Generator | None, letter: str, font: str, cfg: PrintedLettersConfig, augment: bool = True,
) -> np.ndarray:
    """One ``(S, S)`` uint8 image of ``letter`` in ``font``; ``augment=False``: centred, upright, clean, em 0.8."""
    s2 = 2 * cfg.image_size  # drawn at twice the size, downsampled at the end
    if not augment:
        mask = Image.fromarray(glyph_mask(letter, font, round(0.8 * s2)))
        mask.thumbnail((s2 - 4, s2 - 4))  # keep it inside the canvas
        canvas = Image.new("L", (s2, s2), 0)
        canvas.paste(mask, ((s2 - mask.width) // 2, (s2 - mask.height) // 2))
        return np.asarray(canvas.resize((cfg.image_size,) * 2, Image.Resampling.BOX))
    assert rng is not None, "an augmented render needs a generator"
    em = round(rng.uniform(*cfg.em_range) * s2)
    stroke = int(rng.choice([0, 0, 1, 2] if em >= 0.75 * s2 else [0, 0, 1]))  # 2 px would blot small letters
    mask = Image.fromarray(glyph_mask(letter, font, em, stroke))
    mask = mask.rotate(float(rng.uniform(-cfg.max_rotation, cfg.max_rotation)), Image.Resampling.BICUBIC, expand=True)
    box = mask.getbbox()
    mask = mask.crop(box) if box else mask
    if max(mask.size) > s2 - 4:  # too big once rotated: shrink to fit, the glyph stays whole
        mask.thumbnail((s2 - 4, s2 - 4))
    canvas = Image.new("L", (s2, s2), 0)
    left = int(rng.integers(2, s2 - mask.width - 1)) if s2 - mask.width > 3 else (s2 - mask.width) // 2
    top = int(rng.integers(2, s2 - mask.height - 1)) if s2 - mask.height > 3 else (s2 - mask.height) // 2
    canvas.paste(mask, (left, top))
    if rng.random() < cfg.clutter:  # a faint stray line somewhere
        pts = [tuple(int(v) for v in rng.integers(0, s2, 2)) for _ in range(2)]
        ImageDraw.Draw(canvas).line(pts, fill=int(rng.integers(60, 140)), width=int(rng.integers(1, 3)))
    if rng.random() < 0.3:
        canvas = canvas.filter(ImageFilter.GaussianBlur(float(rng.uniform(0.5, 1.5))))
    ink = np.asarray(canvas.resize((cfg.image_size,) * 2, Image.Resampling.BOX), dtype=float) / 255
    bg, fg = rng.uniform(0, 70), rng.uniform(140, 255)
    img = bg + (fg - bg) * ink + rng.normal(0, rng.uniform(0, cfg.noise), ink.shape)
    return np.clip(np.rint(img), 0, 255).astype(np.uint8)


def build_split(cfg: PrintedLettersConfig, split: str) -> tuple[list[np.ndarray], list[dict[str, str]]]:
    """Images ``(S, S)`` uint8 and rows ``{"label", "font"}``, classes interleaved, faces uniform per image."""
    fonts = split_fonts(cfg, split)
    n = cfg.train_per_class if split == "train" else cfg.test_per_class
    rng = np.random.default_rng([cfg.seed, SPLITS.index(split)])
    images, rows = [], []
    for _ in range(n):
        for letter in CLASSES:
            font = fonts[int(rng.integers(len(fonts)))]
            images.append(render(rng, letter, font, cfg))
            rows.append({"label": letter, "font": font})
    return images, rows


def build(data_dir: str | Path = "data", cfg: PrintedLettersConfig = PrintedLettersConfig()) -> Path:
    """Renders (once) the letters as PNGs; returns the ImageFolder root (``<root>/train``, ``<root>/test``).

    Args:
        data_dir: where the settings-hashed folder goes.
        cfg: sizes, held-out faces, augmentation and the seed.
    """
    from tqdm import tqdm

    for font in FONTS:
        check_font(font)
    for split in SPLITS:
        split_fonts(cfg, split)  # bad test_fonts fail before any drawing
    settings = {"v": 1, "render_v": RENDER_VERSION, **asdict(cfg)}

    def make(tmp: Path, _final: Path) -> dict:
        stats = {}
        for split in SPLITS:
            images, attrs = build_split(cfg, split)
            for letter in CLASSES:
                (tmp / split / letter).mkdir(parents=True)
            rows = []
            for i in tqdm(range(len(images)), desc=f"png {split}", file=sys.stderr, mininterval=2.0):
                name = f"{split}/{attrs[i]['label']}/{i:05d}.png"
                Image.fromarray(images[i]).save(tmp / name)
                rows.append({"image": name, **attrs[i]})
            stats[split] = {"images": write_jsonl(tmp / f"{split}.jsonl", rows), "fonts": list(split_fonts(cfg, split))}
        return stats

    manifests = build_once(cache_folder(data_dir, "printed_letters", settings), SPLITS, make, settings)
    return manifests["train"].parent

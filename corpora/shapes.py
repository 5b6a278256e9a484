"""The contrastive task's embedded default: rendered scenes of one or two coloured shapes with
compositional captions ("a small red circle at the top left and a large blue square in the center").

Scenes are drawn with Pillow at 4x and downsampled (anti-aliased), seeded per split, and cached
under ``data/`` as ``images.npy`` (uint8 ``(N, H, W, 3)``) + ``captions.txt`` + ``labels.npy`` in a
folder keyed by a hash of the settings, so a second run loads in well under a second.

Splits:
  * ``train``: one- and two-shape scenes; colour–shape combinations of :data:`UNSEEN_COMBOS` never occur.
    A ``partial_captions`` share of captions describes each shape with a random subset of its
    attributes ("a red shape", "a small circle at the left"), as real alt-text varies in detail;
    this is what makes prompts like "a circle" meaningful for zero-shot classification.
  * ``val`` / ``test``: the same scene distribution with full captions, every caption unique
    within the split (so retrieval recall@k has exactly one right answer per query).
  * ``zeroshot``: single-shape scenes of seen combinations; labels ``(shape, colour, combo)``.
  * ``unseen``: single-shape scenes of the held-out combinations only (compositional generalization).
"""

from __future__ import annotations

import hashlib
import json
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

SHAPES = ("circle", "square", "triangle", "diamond")
COLORS = {  # name → RGB
    "red": (220, 30, 30), "orange": (250, 140, 0), "yellow": (235, 215, 0),
    "green": (30, 160, 50), "blue": (30, 70, 220), "purple": (140, 40, 190),
}
COLOR_NAMES = tuple(COLORS)
SIZES = ("small", "large")
POSITIONS = ("top left", "top", "top right", "left", "center", "right", "bottom left", "bottom", "bottom right")
# One held-out colour per shape, each colour held out at most once: every word is seen in training.
UNSEEN_COMBOS = (("circle", "purple"), ("square", "orange"), ("triangle", "blue"), ("diamond", "yellow"))
RENDER_VERSION = 1  # bump when drawing or captions change, so caches rebuild
SPLITS = ("train", "val", "test", "zeroshot", "unseen")


@dataclass
class ShapesConfig:
    """What a rendered dataset depends on (hashed into the cache folder's name)."""

    image_size: int = 48  # output side in pixels
    num_train: int = 50_000  # training scenes
    num_eval: int = 1_000  # scenes in each of val, test, zeroshot and unseen
    two_shape_fraction: float = 0.6  # share of scenes with two shapes
    partial_captions: float = 0.5  # share of training captions that omit some attributes
    seed: int = 0


def combo_classes() -> list[str]:
    """Class names of the joint (colour, shape) label: index ``shape * len(COLORS) + colour``."""
    return [f"{c} {s}" for s in SHAPES for c in COLOR_NAMES]


def _phrase(shape: int, color: int, size: int, pos: int, keep: tuple[bool, bool, bool, bool]) -> str:
    """One object's words; ``keep`` = (size, colour, position, shape noun)."""
    words = ["a"]
    if keep[0]:
        words.append(SIZES[size])
    if keep[1]:
        words.append(COLOR_NAMES[color])
    words.append(SHAPES[shape] if keep[3] else "shape")
    if keep[2]:
        words.append("in the center" if POSITIONS[pos] == "center" else f"at the {POSITIONS[pos]}")
    return " ".join(words)


def caption(objects: list[tuple[int, int, int, int]], rng: np.random.Generator | None = None) -> str:
    """Objects ``(shape, colour, size, position)`` in reading order → caption; with ``rng``, a partial one."""
    phrases = []
    for obj in objects:
        keep = (True, True, True, True)
        if rng is not None:
            size, color, pos = (bool(b) for b in rng.random(3) < 0.5)
            noun = not ((size or color) and rng.random() < 0.3)  # "a red shape": the colour without the noun
            keep = (size, color, pos, noun)
        phrases.append(_phrase(*obj, keep))
    return " and ".join(phrases)


def _draw(draw: ImageDraw.ImageDraw, shape: int, box: tuple[float, float, float, float], rgb: tuple) -> None:
    x0, y0, x1, y1 = box
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    if SHAPES[shape] == "circle":
        draw.ellipse(box, fill=rgb)
    elif SHAPES[shape] == "square":
        draw.rectangle(box, fill=rgb)
    elif SHAPES[shape] == "triangle":
        draw.polygon([(cx, y0), (x1, y1), (x0, y1)], fill=rgb)
    else:  # diamond
        draw.polygon([(cx, y0), (x1, cy), (cx, y1), (x0, cy)], fill=rgb)


def render(objects: list[tuple[int, int, int, int]], size: int, rng: np.random.Generator) -> np.ndarray:
    """Draws objects ``(shape, colour, size, position)`` on a light background → uint8 ``(size, size, 3)``.

    Positions are the cells of a 3x3 grid; each shape is jittered inside its cell and tinted slightly.
    """
    scale = 4
    side = size * scale
    bg = tuple(int(v) for v in 235 + rng.integers(-15, 16, 3))
    img = Image.new("RGB", (side, side), bg)
    draw = ImageDraw.Draw(img)
    cell = side / 3
    for shape, color, sz, pos in objects:
        extent = cell * (0.45 if SIZES[sz] == "small" else 0.85) * rng.uniform(0.9, 1.0)
        slack = cell - extent
        row, col = divmod(pos, 3)
        x0 = col * cell + rng.uniform(0.15, 0.85) * slack
        y0 = row * cell + rng.uniform(0.15, 0.85) * slack
        rgb = tuple(int(np.clip(v + rng.integers(-20, 21), 0, 255)) for v in COLORS[COLOR_NAMES[color]])
        _draw(draw, shape, (x0, y0, x0 + extent, y0 + extent), rgb)
    return np.asarray(img.resize((size, size), Image.Resampling.BOX))


def _sample_objects(rng: np.random.Generator, n: int, combos: list[tuple[int, int]]) -> list[tuple[int, int, int, int]]:
    """``n`` objects in distinct cells, sorted in reading order, colour–shape pairs drawn from ``combos``."""
    cells = sorted(rng.choice(9, size=n, replace=False).tolist())
    out = []
    for pos in cells:
        shape, color = combos[int(rng.integers(len(combos)))]
        out.append((shape, color, int(rng.integers(len(SIZES))), pos))
    return out


def _combos(unseen: bool) -> list[tuple[int, int]]:
    held = {(SHAPES.index(s), COLOR_NAMES.index(c)) for s, c in UNSEEN_COMBOS}
    every = [(s, c) for s in range(len(SHAPES)) for c in range(len(COLORS))]
    return [sc for sc in every if (sc in held) == unseen]


def build_split(cfg: ShapesConfig, split: str) -> tuple[np.ndarray, list[str], np.ndarray]:
    """Renders one split → ``(images (N, H, W, 3) uint8, captions, labels (N, 3) int64)``.

    Labels are ``(shape, colour, combo)`` of the first shape for single-shape scenes, -1 for two-shape ones.
    """
    if split not in SPLITS:
        raise ValueError(f"unknown shapes split {split!r}; choose one of {SPLITS}")
    rng = np.random.default_rng([cfg.seed, SPLITS.index(split)])
    n = cfg.num_train if split == "train" else cfg.num_eval
    combos = _combos(unseen=split == "unseen")
    single_only = split in ("zeroshot", "unseen")
    unique = split in ("val", "test")
    images = np.empty((n, cfg.image_size, cfg.image_size, 3), np.uint8)
    labels = np.full((n, 3), -1, np.int64)
    captions: list[str] = []
    seen: set[str] = set()
    report = max(1, n // 10)
    i = 0
    while i < n:
        k = 1 if single_only or rng.random() >= cfg.two_shape_fraction else 2
        objects = _sample_objects(rng, k, combos)
        partial = split == "train" and rng.random() < cfg.partial_captions
        text = caption(objects, rng if partial else None)
        if unique and text in seen:
            continue  # val/test captions are unique: a retrieval query has exactly one right image
        seen.add(text)
        images[i] = render(objects, cfg.image_size, rng)
        captions.append(text)
        if k == 1:
            shape, color = objects[0][:2]
            labels[i] = (shape, color, shape * len(COLORS) + color)
        i += 1
        if n >= 5000 and i % report == 0:
            print(f"rendering shapes {split}: {i:,}/{n:,}", file=sys.stderr, flush=True)
    return images, captions, labels


def cache_dir(cfg: ShapesConfig, data_dir: str | Path) -> Path:
    """``<data_dir>/shapes_<hash of the settings>``."""
    key = json.dumps({**asdict(cfg), "version": RENDER_VERSION}, sort_keys=True)
    return Path(data_dir) / f"shapes_{hashlib.sha256(key.encode()).hexdigest()[:12]}"


def ensure_rendered(cfg: ShapesConfig, data_dir: str | Path) -> Path:
    """Renders every split once (atomically, per split) and returns the cache folder."""
    folder = cache_dir(cfg, data_dir)
    for split in SPLITS:
        done = folder / split / "done"
        if done.exists():
            continue
        images, captions, labels = build_split(cfg, split)
        tmp = folder / f"{split}.tmp"
        tmp.mkdir(parents=True, exist_ok=True)
        np.save(tmp / "images.npy", images)
        np.save(tmp / "labels.npy", labels)
        (tmp / "captions.txt").write_text("\n".join(captions) + "\n")
        (tmp / "done").write_text(json.dumps(asdict(cfg)))
        if (folder / split).exists():
            import shutil

            shutil.rmtree(folder / split)
        tmp.replace(folder / split)
    return folder


def load_split(folder: Path, split: str) -> tuple[np.ndarray, list[str], np.ndarray]:
    """A cached split → ``(images (N, H, W, 3) uint8, captions, labels (N, 3))``."""
    path = folder / split
    if not (path / "done").exists():
        raise FileNotFoundError(f"shapes split {split!r} is not rendered under {folder}; call ensure_rendered first")
    captions = (path / "captions.txt").read_text().splitlines()
    return np.load(path / "images.npy"), captions, np.load(path / "labels.npy")


class ShapesCorpus:
    """``ShapesCorpus(...)(data_dir)``: the contrastive recipe's builder. Renders every split once and returns
    ``{split: <folder>/<split>}`` for :data:`SPLITS` (each holds ``images.npy`` ``(N, H, W, 3)`` uint8,
    ``captions.txt``, ``labels.npy`` ``(N, 3)``) and ``label_classes``: the class names of the label columns
    (``shape``, ``color``, ``combo``).

    Args: see :class:`ShapesConfig` (``seed`` seeds the scenes).
    """

    def __init__(self, image_size: int = 48, num_train: int = 50_000, num_eval: int = 1_000,
                 two_shape_fraction: float = 0.6, partial_captions: float = 0.5, seed: int = 0) -> None:
        if not 0.0 <= two_shape_fraction <= 1.0 or not 0.0 <= partial_captions <= 1.0:
            raise ValueError("two_shape_fraction and partial_captions are fractions in [0, 1]")
        self.config = ShapesConfig(image_size, num_train, num_eval, two_shape_fraction, partial_captions, seed)

    def __call__(self, data_dir: Path) -> dict:
        folder = ensure_rendered(self.config, data_dir)
        classes = {"shape": list(SHAPES), "color": list(COLOR_NAMES), "combo": combo_classes()}
        return {**{split: folder / split for split in SPLITS}, "label_classes": classes}

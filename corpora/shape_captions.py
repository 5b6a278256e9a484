"""The image-captioning recipe's embedded default: the rendered coloured-shape scenes of
:mod:`corpora.shapes` as PNG files with one caption each.

Captions are the *canonical* full form only ("a small red circle at the top left and a large blue
square in the center": every object with size, colour, shape and position, objects in reading
order), i.e. the shapes renderer with ``partial_captions=0``. The contrastive recipe's training
captions drop attributes at random, which no captioner could predict from the image; one
deterministic caption per scene makes BLEU and exact match measure what the model sees. Colour–shape
combinations held out by the renderer (:data:`~corpora.shapes.UNSEEN_COMBOS`) occur
in no split here; validation and test captions are unique within their split. Output, in
``data/shape_captions_<hash of the settings>/``::

    train.jsonl  val.jsonl  test.jsonl     {"image": "train/00042.png", "caption": "a large blue square ..."}
    train/ val/ test/                      RGB PNG files, image_size x image_size
"""

from __future__ import annotations

import sys
from dataclasses import asdict, dataclass
from pathlib import Path

from PIL import Image

from corpora.manifests import build_once, cache_folder, write_jsonl
from corpora.shapes import RENDER_VERSION, ShapesConfig, build_split

SPLITS = ("train", "val", "test")


@dataclass(frozen=True)
class ShapeCaptionsConfig:
    """What the captioning set holds; every field enters the cache hash."""

    image_size: int = 48  # the renderer's default side, in pixels
    num_train: int = 20_000  # training scenes
    num_eval: int = 1_000  # scenes in each of val and test
    two_shape_fraction: float = 0.6  # share of scenes with two shapes
    seed: int = 0


def shapes_config(cfg: ShapeCaptionsConfig) -> ShapesConfig:
    """The renderer's settings: full (canonical) captions only."""
    return ShapesConfig(image_size=cfg.image_size, num_train=cfg.num_train, num_eval=cfg.num_eval,
                        two_shape_fraction=cfg.two_shape_fraction, partial_captions=0.0, seed=cfg.seed)


def build(data_dir: str | Path = "data", cfg: ShapeCaptionsConfig = ShapeCaptionsConfig()) -> dict[str, Path]:
    """Renders (once) the scenes and writes them as PNGs; returns ``{"train"|"val"|"test": manifest path}``.

    Args:
        data_dir: where the settings-hashed PNG folder goes.
        cfg: sizes, the two-shape share and the seed (20k + 2k scenes take well under a minute).
    """
    from tqdm import tqdm

    settings = {"v": 1, "render_v": RENDER_VERSION, **asdict(cfg)}

    def make(tmp: Path, _final: Path) -> dict:
        stats = {}
        for split in SPLITS:
            images, captions, _ = build_split(shapes_config(cfg), split)  # (N, H, W, 3) uint8, N captions
            (tmp / split).mkdir()
            rows = []
            for i in tqdm(range(len(captions)), desc=f"png {split}", file=sys.stderr, mininterval=2.0):
                name = f"{split}/{i:05d}.png"
                Image.fromarray(images[i]).save(tmp / name)
                rows.append({"image": name, "caption": captions[i]})
            stats[split] = {"images": write_jsonl(tmp / f"{split}.jsonl", rows),
                            "unique_captions": len(set(captions))}
        return stats

    return build_once(cache_folder(data_dir, "shape_captions", settings), SPLITS, make, settings)

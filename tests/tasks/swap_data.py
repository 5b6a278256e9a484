"""Small generated datasets of other shapes than the recipes' embedded defaults, for tests/tasks/test_data_swap.py:
each writer puts its files under a folder and returns the ``data:`` section a user would write for them.

Every shape differs from the recipe it replaces: 3 image classes (not 10), 32x32 RGB files (not 28x28 gray),
4 keyword classes (not 35), text vocabularies of 40-90 pieces (not 128-8,000), Acrobot-v1 (6 states, 3 actions;
not CartPole's 4 and 2) and MountainCarContinuous-v0 (2 states; not Pendulum's 3). The data are tiny (tens
of samples) so that fit, test and predict of every recipe take seconds.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from tests.data.manifests import tone

SPLITS = {"train": (24, 0), "val": (6, 1), "test": (6, 2)}  # rows, seed
SHAPES = {"disc": (220, 40, 40), "bar": (40, 200, 60), "ring": (40, 60, 220)}  # 3 classes, one colour each
KEYWORDS = {"low": 220.0, "mid": 440.0, "high": 880.0, "top": 1320.0}  # 4 classes, one tone each
COLOURS = ["red", "green", "blue", "grey"]
PLACES = ["left", "right", "top", "bottom", "middle"]
ENGLISH = ["one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "cat", "dog"]
SPANISH = {"one": "uno", "two": "dos", "three": "tres", "four": "cuatro", "five": "cinco", "six": "seis",
           "seven": "siete", "eight": "ocho", "nine": "nueve", "ten": "diez", "cat": "gato", "dog": "perro"}


def _image(path: Path, shape: str, rng: np.random.Generator) -> str:
    """A 32x32 RGB PNG: noise plus the class's shape in its colour."""
    from PIL import Image, ImageDraw

    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = rng.integers(0, 60, size=(32, 32, 3), dtype=np.uint8)
    img = Image.fromarray(pixels, "RGB")
    draw, x, y = ImageDraw.Draw(img), int(rng.integers(4, 12)), int(rng.integers(4, 12))
    if shape == "disc":
        draw.ellipse([x, y, x + 16, y + 16], fill=SHAPES[shape])
    elif shape == "bar":
        draw.rectangle([x, y, x + 18, y + 6], fill=SHAPES[shape])
    else:
        draw.ellipse([x, y, x + 16, y + 16], outline=SHAPES[shape], width=3)
    img.save(path)
    return str(path)


def _write_jsonl(path: Path, rows: list[dict[str, Any]]) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path)


def _rows(folder: Path, n: int, seed: int) -> list[dict[str, Any]]:
    """Rows with every field the swaps read: an image and its class and caption, a tone clip and its keyword,
    a number-word sentence and its Spanish translation."""
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        shape, keyword = list(SHAPES)[i % len(SHAPES)], list(KEYWORDS)[i % len(KEYWORDS)]
        words = rng.choice(ENGLISH, size=int(rng.integers(2, 6))).tolist()
        colour, place = COLOURS[int(rng.integers(len(COLOURS)))], PLACES[int(rng.integers(len(PLACES)))]
        rows.append({
            "image": str(Path(_image(folder / "media" / f"{seed}_{i}.png", shape, rng)).relative_to(folder)),
            "shape": shape,
            "caption": f"a {colour} {shape} at the {place}",
            "audio": str(Path(_tone8k(folder / "media" / f"{seed}_{i}.wav", KEYWORDS[keyword],
                                    float(rng.uniform(0.3, 0.6)))).relative_to(folder)),
            "keyword": keyword,
            "sentence": " ".join(words),
            "spanish": " ".join(SPANISH[w] for w in words),
        })
    return rows


def write_manifests(folder: Path) -> Path:
    """train/val/test JSONL manifests of :func:`_rows`, plus an ImageFolder tree of the same images."""
    for split, (n, seed) in SPLITS.items():
        rows = _rows(folder, n, seed)
        _write_jsonl(folder / f"{split}.jsonl", rows)
        if split != "val":  # ImageFolderData holds out its own validation share of train/
            for k, r in enumerate(rows):
                target = folder / "imagefolder" / split / r["shape"] / f"{k}.png"
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes((folder / r["image"]).read_bytes())
                if split == "test":  # ImageFolderData predicts a flat folder of files (predict_dir)
                    flat = folder / "imagefolder" / "predict" / f"{k}.png"
                    flat.parent.mkdir(parents=True, exist_ok=True)
                    flat.write_bytes(target.read_bytes())
    return folder


def manifest_data(folder: Path, fields: dict[str, dict[str, Any]], inputs: dict[str, str],
                  **init_args: Any) -> dict[str, Any]:
    """A ``data:`` section over :func:`write_manifests`'s manifests (``mmformer.data.ManifestData``)."""
    paths = {split: str(folder / f"{split}.jsonl") for split in SPLITS}
    return {"class_path": "mmformer.data.ManifestData",
            "init_args": {**paths, "fields": fields, "inputs": inputs, "data_dir": str(folder / "cache"),
                          "batch_size": 8, **init_args}}


def write_episodes(path: Path, env_id: str, episodes: int, max_steps: int, seed: int = 0) -> str:
    """A D4RL ``.npz`` of ``episodes`` episodes of random actions in ``env_id``, each cut at ``max_steps``
    (flagged as a timeout)."""
    import gymnasium as gym

    env = gym.make(env_id)
    env.action_space.seed(seed)
    cols: dict[str, list[Any]] = {k: [] for k in ("observations", "actions", "rewards", "terminals", "timeouts")}
    for e in range(episodes):
        obs, _ = env.reset(seed=seed + e)
        for t in range(max_steps):
            action = env.action_space.sample()
            nxt, reward, terminated, truncated, _ = env.step(action)
            cols["observations"].append(np.asarray(obs, dtype=np.float32))
            cols["actions"].append(action)
            cols["rewards"].append(float(reward))
            cols["terminals"].append(bool(terminated))
            cols["timeouts"].append(bool(truncated) or (t == max_steps - 1 and not terminated))
            obs = nxt
            if terminated or truncated:
                break
    env.close()
    arrays = {k: np.asarray(v) for k, v in cols.items()}
    arrays["observations"] = arrays["observations"].astype(np.float32)
    arrays["rewards"] = arrays["rewards"].astype(np.float32)
    if arrays["actions"].dtype.kind == "f":
        arrays["actions"] = arrays["actions"].astype(np.float32)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, **arrays)
    return str(path)


def _tone8k(path: Path, freq: float, seconds: float) -> str:
    """A mono sine WAV at 8 kHz (the recipes' 16 kHz fields resample it)."""
    return tone(path, freq, seconds, rate=8000)

"""The image-classification recipe on a second corpus of another domain: printed letters in held-out fonts.

The corpus is :mod:`corpora.printed_letters` (ten confusable lowercase letters, a b d e g h n p
q u, from 23 faces shipped inside matplotlib and Pillow; rotated, scaled, moved, thickened, blurred, noised,
28x28 grayscale; the test split uses six faces never seen in training). The recipe runs as a user would run
it on their own ImageFolder tree: ``tasks/image_classification.yaml`` unchanged except its data section,
which becomes ``mmformer.data.ImageFolderData`` over the tree (the same batch size, validation fraction and
crop padding as the Fashion-MNIST section; ``hflip: false``, since a mirrored b is a d). The model section
stays as shipped: its tokenizer already takes 1-channel 28x28 images and the corpus has 10 classes. Then
``mmformer test`` on ``best.ckpt`` (``last.ckpt`` when there is none). The merged recipe is written to
``<root>/image_letters.yaml``, so ``mmformer fit --config`` on it repeats the run.

    python bench/second_corpus_image.py --root runs/sc_image
    python bench/second_corpus_image.py --root runs/sc_image --ckpt runs/sc_image/version_0/checkpoints/last.ckpt

Prints ``recipe: test/acc <acc> (chance 0.10) on held-out fonts`` with top-5 accuracy and the fit's minutes.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from corpora import printed_letters  # noqa: E402
from common import fit_and_test  # noqa: E402



def data_section(root: Path, shipped: dict[str, Any]) -> dict[str, Any]:
    """The recipe's new ``data:``: ImageFolderData over the tree, the shipped loader settings kept."""
    keep = {k: v for k, v in shipped.get("init_args", {}).items()
            if k in ("batch_size", "val_fraction", "crop_padding")}
    return {"class_path": "mmformer.data.ImageFolderData",
            "init_args": {"root": str(root), "image_size": 28, "channels": 1, **keep, "hflip": False}}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--root", default="runs/second_corpus_image", help="run folder")
    p.add_argument("--config", default="tasks/image_classification.yaml")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="extra mmformer override")
    p.add_argument("--train-per-class", type=int, default=printed_letters.PrintedLettersConfig.train_per_class)
    p.add_argument("--ckpt", help="skip the fit and test this checkpoint")
    args = p.parse_args()
    root = Path(args.root).resolve()
    root.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    cfg = printed_letters.PrintedLettersConfig(train_per_class=args.train_per_class)
    tree = printed_letters.build(ROOT / "data", cfg)
    print(f"corpus {tree} ({time.perf_counter() - t0:.0f} s)", flush=True)
    recipe = yaml.safe_load((ROOT / args.config).read_text())
    recipe["data"] = data_section(tree, recipe["data"])  # only the data section is swapped
    config = root / "image_letters.yaml"
    config.write_text(yaml.safe_dump(recipe, sort_keys=False))
    done = fit_and_test(["--config", str(config), *[f"--{kv}" for kv in args.set]], root, ROOT, args.ckpt)
    m, ckpt, minutes = done.metrics, done.ckpt, done.fit_minutes
    print(f"recipe: test/acc {m['test/acc']:.3f} (chance 0.10) on held-out fonts, top-5 "
          f"{m.get('test/acc_top5', float('nan')):.3f} (fit {minutes:.1f} min, {ckpt})")


if __name__ == "__main__":
    main()

"""The CLIP recipe on a second corpus of another domain: small glyphs on coloured backgrounds.

The corpus is :mod:`corpora.glyph_captions` (the ten digits, 12-20 px high in 48x48 images,
on jittered, noisy coloured backgrounds; captions name the digit and both colours). The recipe runs as a
user would run it on their own image-caption manifests: ``tasks/clip.yaml`` unchanged except its data
section, which becomes ``mmformer.data.ManifestData`` over the three JSONL manifests with ``zeroshot``
over the label fields (plus any ``--set`` overrides), then ``mmformer test`` on ``best.ckpt`` (chosen by
validation t2i R@1; ``last.ckpt`` when there is none). The merged recipe is written to
``<root>/clip_glyphs_<eval split>.yaml``, so ``mmformer fit --config`` on it repeats the run.

    python bench/second_corpus_clip.py --root runs/sc_clip
    python bench/second_corpus_clip.py --root runs/sc_clip_short --set trainer.max_time=00:00:12:00
    python bench/second_corpus_clip.py --root runs/sc_clip --eval-split val --ckpt runs/sc_clip/version_0/checkpoints/best.ckpt

Prints ``recipe: zeroshot glyph <acc> (bar 0.80, chance 0.10), t2i R@1 ..., i2t R@1 ...`` plus the
background and glyph-colour zero-shot accuracies, which show what the towers attend to.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from corpora import glyph_captions  # noqa: E402
from common import fit_and_test  # noqa: E402

BAR = 0.80  # the zero-shot glyph identity bar
PROMPTS = {  # label field → zero-shot prompts through the text tower
    "glyph": ["the digit {}", "a {}", "the number {}"],
    "background": ["a {} background", "on {}"],
    "color": ["a {} digit", "written in {}"],
}


def caption_prompts() -> list[str]:
    """Glyph prompts worded like the training captions, ``{}`` = the digit: every caption template with
    every readable (glyph colour, background) pair, size and position left out. The prompt ensemble averages
    the colours away (CLIP's prompt ensembling), where a bare "the digit 7" is unlike any training caption."""
    names = glyph_captions.COLOR_NAMES
    return [t.format(g="{}", c=names[c], b=names[b], w="", p="")
            for t in glyph_captions.TEMPLATES for c, b in glyph_captions.colour_pairs()]


def data_section(paths: dict[str, Path], eval_split: str, prompts: str = "captions") -> dict[str, Any]:
    """The recipe's new ``data:``: ManifestData over the corpus (``test`` points at ``eval_split``'s manifest);
    ``prompts``: the glyph's zero-shot prompts, ``captions`` (:func:`caption_prompts`) or ``bare`` (PROMPTS)."""
    zeroshot = {**PROMPTS, "glyph": caption_prompts()} if prompts == "captions" else PROMPTS
    return {
        "class_path": "mmformer.data.ManifestData",
        "init_args": {
            "train": str(paths["train"]), "val": str(paths["val"]), "test": str(paths[eval_split]),
            "fields": {"image": {"type": "image", "size": 48}, "caption": {"type": "text", "max_len": 48},
                       **{name: {"type": "label"} for name in PROMPTS}},
            "inputs": {"a": "image", "b": "caption"},
            "zeroshot": zeroshot,
            "data_dir": "data", "vocab_size": 128, "batch_size": 256, "drop_last": True,
        },
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--root", default="runs/second_corpus_clip", help="run folder")
    p.add_argument("--config", default="tasks/clip.yaml")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="extra mmformer override")
    p.add_argument("--num-train", type=int, default=glyph_captions.GlyphCaptionsConfig.num_train)
    p.add_argument("--eval-split", choices=("test", "val"), default="test",
                   help="measure on this split (val: choose between fixes without looking at test)")
    p.add_argument("--prompts", choices=("captions", "bare"), default="captions",
                   help="glyph prompts: worded like the captions, averaged over colours (chosen on validation), "
                        "or bare (\"the digit {}\", ...)")
    p.add_argument("--ckpt", help="skip the fit and test this checkpoint")
    args = p.parse_args()
    root = Path(args.root).resolve()
    root.mkdir(parents=True, exist_ok=True)
    paths = glyph_captions.build(ROOT / "data", glyph_captions.GlyphCaptionsConfig(num_train=args.num_train))
    recipe = yaml.safe_load((ROOT / args.config).read_text())
    recipe["data"] = data_section(paths, args.eval_split, args.prompts)  # only the data section is swapped
    config = root / f"clip_glyphs_{args.eval_split}.yaml"
    config.write_text(yaml.safe_dump(recipe, sort_keys=False))
    done = fit_and_test(["--config", str(config), *[f"--{kv}" for kv in args.set]], root, ROOT, args.ckpt,
                        test_log=f"test_{args.eval_split}.log")
    m, ckpt = done.metrics, done.ckpt
    glyph = m["test/zeroshot_glyph_acc"]
    print(f"recipe on {args.eval_split}: zeroshot glyph {glyph:.3f} (bar {BAR:.2f}, chance 0.10), "
          f"background {m.get('test/zeroshot_background_acc', float('nan')):.3f}, "
          f"glyph colour {m.get('test/zeroshot_color_acc', float('nan')):.3f}; "
          f"t2i R@1 {m.get('test/t2i_r@1', float('nan')):.3f}, i2t R@1 {m.get('test/i2t_r@1', float('nan')):.3f} "
          f"(fit {done.fit_minutes:.1f} min, test {done.test_minutes:.1f} min, {ckpt})", flush=True)
    print(f"{'meets' if glyph >= BAR else 'misses'} the {BAR:.2f} bar")


if __name__ == "__main__":
    main()

"""The translation recipe on a second corpus of another domain, beside a plain-PyTorch peer at equal minutes.

The corpus is the system's gettext catalogs (:mod:`mmformer.data.builders.gettext_catalogs`: English software
messages and their human Spanish translations, ~28k training pairs). The recipe runs as a user would run it
on their own pairs: ``tasks/translation.yaml`` unchanged except the data section (the three paths, and any
``--set`` overrides given), then ``mmformer test`` on ``best.ckpt`` (chosen by validation BLEU). The peer,
``bench/translation_peer.py``, trains for as many minutes as the recipe's fit took and decodes the same
test split.

    python bench/second_corpus.py --root runs/second_corpus
    python bench/second_corpus.py --root runs/sc_vocab4k --set data.init_args.vocab_size=4000 \
        --set model.init_args.target_vocab_size=4000 --set model.init_args.source_tokenizer.init_args.vocab_size=4000

Prints ``recipe: test/bleu ...``, ``peer: test/bleu ...`` and ``bleu vs plain peer: <ours - peer>``.
"""

from __future__ import annotations

import argparse
import re
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from mmformer.data.builders import gettext_catalogs  # noqa: E402
from common import run_logged  # noqa: E402

METRIC = re.compile(r"(test/\w+)\W+([-\d.]+)")


def run(cmd: list[str], log: Path) -> str:
    return run_logged(cmd, log, ROOT)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--root", default="runs/second_corpus", help="run folder (must not hold an earlier run)")
    p.add_argument("--config", default="tasks/translation.yaml")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="extra mmformer override")
    p.add_argument("--skip-peer", action="store_true")
    args = p.parse_args()
    root = Path(args.root).resolve()
    root.mkdir(parents=True, exist_ok=True)
    paths = gettext_catalogs.build(ROOT / "data")
    data = [f"--data.init_args.{split}_path={paths[split]}" for split in ("train", "val", "test")]
    extra = [f"--{kv}" for kv in args.set]
    mm = [sys.executable, "-m", "mmformer"]
    t0 = time.perf_counter()
    run([*mm, "fit", "--config", args.config, *data, *extra, f"--trainer.default_root_dir={root}",
         "--trainer.enable_progress_bar=false"], root / "fit.log")
    minutes = (time.perf_counter() - t0) / 60
    best = sorted(root.glob("version_*/checkpoints/best.ckpt"))[-1]
    out = run([*mm, "test", "--config", args.config, *data, *extra, f"--trainer.default_root_dir={root / 'test'}",
               "--trainer.enable_progress_bar=false", f"--ckpt_path={best}"], root / "test.log")
    metrics = dict(METRIC.findall(out))
    ours = float(metrics["test/bleu"])
    print(f"recipe: test/bleu {ours:.1f}, chrf {float(metrics.get('test/chrf', 'nan')):.1f} "
          f"({args.config}, fit {minutes:.1f} min, {best.relative_to(root)})", flush=True)
    if args.skip_peer:
        return
    out = run([sys.executable, "bench/translation_peer.py", "--train", str(paths["train"]), "--test",
               str(paths["test"]), "--minutes", f"{minutes:.2f}"], root / "peer.log")
    line = next(l for l in out.splitlines() if l.startswith("peer:"))
    print(line)
    peer = float(re.search(r"test/bleu ([\d.]+)", line).group(1))  # type: ignore[union-attr]
    print(f"bleu vs plain peer: {ours - peer:+.1f} ({ours:.1f} vs {peer:.1f}, same test split, equal minutes)")


if __name__ == "__main__":
    main()

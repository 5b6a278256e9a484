"""The translation recipe on a second corpus of another domain, beside a plain-PyTorch peer at equal minutes.

The corpus is the system's gettext catalogs (:mod:`corpora.gettext_catalogs`: English software
messages and their human Spanish translations, ~28k training pairs). The recipe runs as a user would run it
on their own pairs: ``tasks/translation.yaml`` unchanged except the data section (the three paths, and any
``--set`` overrides given), then ``mmformer test`` on ``best.ckpt`` (chosen by validation BLEU). The peer,
``bench/translation_peer.py``, trains for as many minutes as the recipe's fit took and decodes the same
test split.

    python bench/second_corpus.py --root runs/second_corpus
    python bench/second_corpus.py --root runs/sc_vocab4k --set data.init_args.vocab_size=4000 \
        --set model.init_args.model.target_vocab_size=4000 --set model.init_args.model.source_tokenizer.init_args.vocab_size=4000

Prints ``recipe: test/bleu ...``, ``peer: test/bleu ...`` and ``bleu vs plain peer: <ours - peer>``.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from corpora import gettext_catalogs  # noqa: E402
from common import fit_and_test, run_logged  # noqa: E402

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
    data = [f"--data.init_args.{split}={paths[split]}" for split in ("train", "val", "test")]
    done = fit_and_test(["--config", args.config, *data, *[f"--{kv}" for kv in args.set]], root, ROOT)
    ours, minutes = done.metrics["test/bleu"], done.fit_minutes
    print(f"recipe: test/bleu {ours:.1f}, chrf {done.metrics.get('test/chrf', float('nan')):.1f} "
          f"({args.config}, fit {minutes:.1f} min, {done.ckpt.relative_to(root)})", flush=True)
    if args.skip_peer:
        return
    out = run_logged([sys.executable, "bench/translation_peer.py", "--train", str(paths["train"]), "--test",
                      str(paths["test"]), "--minutes", f"{minutes:.2f}"], root / "peer.log", ROOT)
    line = next(l for l in out.splitlines() if l.startswith("peer:"))
    print(line)
    peer = float(re.search(r"test/bleu ([\d.]+)", line).group(1))  # type: ignore[union-attr]
    print(f"bleu vs plain peer: {ours - peer:+.1f} ({ours:.1f} vs {peer:.1f}, same test split, equal minutes)")


if __name__ == "__main__":
    main()

"""``mmformer average``: one checkpoint whose weights are the mean of several (:mod:`mmformer.average`).

    mmformer average --ckpt_paths a.ckpt b.ckpt c.ckpt --output avg.ckpt
    mmformer average --last 5 --run runs/version_3 --output runs/version_3/checkpoints/avg5.ckpt
    mmformer test --config tasks/<recipe>.yaml --ckpt_path runs/version_3/checkpoints/avg5.ckpt
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Sequence

from mmformer.average import average_checkpoints, last_checkpoints, save_checkpoint


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mmformer average", description=__doc__.split("\n\n")[0])
    which = parser.add_mutually_exclusive_group(required=True)
    which.add_argument("--ckpt_paths", nargs="+", metavar="CKPT", help="checkpoints to average (2 or more)")
    which.add_argument("--last", type=int, metavar="N", help="the N newest step checkpoints of --run")
    parser.add_argument("--run", metavar="DIR", help="with --last: a run folder (runs/version_N) or its checkpoints/")
    parser.add_argument("--output", required=True, metavar="CKPT", help="the averaged checkpoint to write")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; bad inputs raise ValueError/FileNotFoundError (one line from the ``mmformer`` command)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.last is not None:
        if args.run is None:
            parser.error("--last needs --run (a run folder, e.g. runs/version_0)")
        if args.last < 2:
            parser.error(f"--last must be at least 2, got {args.last}")
        paths: list[Path] = last_checkpoints(args.run, args.last)
    else:
        paths = [Path(p) for p in args.ckpt_paths]
    out = save_checkpoint(average_checkpoints(paths), args.output)
    print(f"{out}: mean of {len(paths)} checkpoints ({', '.join(p.name for p in paths)})", file=sys.stderr)
    return 0


"""``mmformer prepare``: converts a source into streaming shards, once (:func:`mmformer.data.shards.prepare.prepare`).

    mmformer prepare imagefolder data/pets shards/pets          # -> shards/pets/{train,test}
    mmformer prepare idx /usr/share/datasets/fashion-mnist shards/fmnist
    mmformer prepare imagefolder data/digits shards/digits --decode   # small images: store pixels
    mmformer prepare manifest data/kw/train.jsonl shards/kw-train   # nemo, pairs, d4rl alike

Each split is written to ``<out>/<split>`` (``<out>`` itself for single-file sources) through a
``.partial`` folder renamed when complete: rerunning on finished output is a no-op (the index records
the source's fingerprint), and an interrupted run starts that split again cleanly. Copy or sync the
finished folder to object storage (``s3://...``) to train from it on many nodes.
"""

from __future__ import annotations

import argparse
from typing import Sequence

from mmformer.data.shards.prepare import prepare
from mmformer.data.shards.sources import SOURCES


def build_parser() -> argparse.ArgumentParser:
    """The options of ``mmformer prepare`` (also read from ``--config`` files by :mod:`mmformer.cli`)."""
    parser = argparse.ArgumentParser(prog="mmformer prepare", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("kind", choices=sorted(SOURCES), help="source format")
    parser.add_argument("source", help="the source folder or file")
    parser.add_argument("out", help="output folder of the shards")
    parser.add_argument("--chunk-bytes", default="64MB", help="target chunk size (default 64MB)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument("--decode", action="store_true",
                        help="imagefolder: store decoded pixels, not the files (small images: workers skip decoding)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """``mmformer prepare KIND SOURCE OUT [--chunk-bytes 64MB]``."""
    args = build_parser().parse_args(argv)
    for name, folder in prepare(args.kind, args.source, args.out, args.chunk_bytes, not args.no_progress,
                                args.decode).items():
        print(f"{name}: {folder}")
    return 0

"""Fuzzing the readers of every user format: seeded corruptions, each one's outcome counted.

    python bench/fuzz_readers.py                      # 1000 cases per format (~40 s of one core)
    python bench/fuzz_readers.py --examples 200 --format "audio files"

For each format (multimodal manifests JSONL/CSV/TSV, NeMo manifests, OpenCLIP caption tables, TSV/JSONL text
pairs, D4RL .npz, image files, audio files, IDX files) hypothesis draws the same derandomized cases every run:
byte-level edits of valid files (bit flips, interesting values, insertions, deletions, truncations) and,
for the text formats, field-level edits (any JSON value, awkward strings, dropped/added cells and keys).
Prints one line per format, ``format: tried N, loaded L, clear errors E, other O``, then the first "other"
cases with their reasons. A clear error is mmformer's own one-line error naming the file (and row);
"other" (a foreign exception, a hang, garbage loaded) should be 0: exit status 1 when it is not.
The same harness runs in ``tests/data/readers/test_fuzz_readers.py``; definitions in ``tests/data/readers/fuzzing.py``.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository root: tests.data.readers

from tests.data.readers.fuzz_formats import FORMATS  # noqa: E402
from tests.data.readers.fuzzing import run  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--examples", type=int, default=1000, help="cases per format")
    parser.add_argument("--format", action="append", choices=sorted(FORMATS), help="only these formats")
    args = parser.parse_args(argv)
    others = 0
    for name in args.format or FORMATS:
        start = time.perf_counter()
        tally = run(name, FORMATS[name], args.examples, strict=False)
        print(f"{tally.line()}  ({time.perf_counter() - start:.1f} s)", flush=True)
        for detail in tally.others[:8]:
            print(f"    other: {detail}")
        others += tally.counts["other"]
    return 1 if others else 0


if __name__ == "__main__":
    sys.exit(main())

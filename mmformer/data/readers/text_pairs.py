"""Readers of parallel text: TSV, JSONL and a pair of line-aligned text files, with clear errors.

Formats (chosen by the file suffix):

- ``.tsv`` / ``.tab``: ``source<TAB>target`` per line, no quoting (quotes are text). A first row
  that is exactly ``<src_key><TAB><tgt_key>`` (e.g. ``src<TAB>tgt``) is a header and skipped.
- ``.jsonl`` / ``.json``: one JSON object per line, ``{"src": ..., "tgt": ...}`` (key names configurable);
  other keys are ignored.
- two plain text files (any other suffix), given as a pair of paths: line ``i`` of the first
  translates to line ``i`` of the second.

Handling of bad input (documented policy):

- a blank line, or a row whose source or target is empty after stripping, is skipped; one warning
  says how many were skipped and the first such row;
- a malformed row (not exactly 2 TSV fields, invalid JSON, not an object, missing key, non-string
  value) raises ``ValueError`` naming the file and the 1-based row number;
- parallel files with different line counts raise naming the first line where one of them ends;
- text is whitespace-normalized (tabs/newlines inside a field become spaces).

Every pair keeps its 1-based row number (``row``) so batches can name where a sentence came from.
"""

from __future__ import annotations

import json
import sys
import warnings
from dataclasses import dataclass
from itertools import zip_longest
from pathlib import Path
from typing import Iterator, Sequence

from mmformer.data.readers.text import encodable

TSV_SUFFIXES = (".tsv", ".tab")
JSONL_SUFFIXES = (".jsonl", ".json")


def normalize_space(text: str) -> str:
    """Collapses runs of whitespace (tabs and newlines included) to one space and strips the ends."""
    return " ".join(text.split())


@dataclass
class TextPairs:
    """Aligned sentences from one source.

    Args:
        sources, targets: the sentences (equal lengths; targets empty for prediction inputs).
        rows: the 1-based row (line) number of each pair in its file.
        name: what was read (file names), for messages.
    """

    sources: list[str]
    targets: list[str]
    rows: list[int]
    name: str

    def __len__(self) -> int:
        return len(self.sources)

    def head(self, n: int | None) -> "TextPairs":
        """The first ``n`` pairs (all of them when ``n`` is None)."""
        if n is None:
            return self
        return TextPairs(self.sources[:n], self.targets[:n], self.rows[:n], self.name)


def _open_lines(path: Path) -> Iterator[str]:
    if not path.is_file():
        raise FileNotFoundError(f"parallel-text file {path} does not exist")
    with open(path, "rb") as f:
        for i, raw in enumerate(f, 1):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as err:
                raise ValueError(f"{path}, row {i}: not valid UTF-8 ({err.reason} at byte {err.start}); "
                                 f"re-encode the file as UTF-8") from None
            yield line.rstrip("\n").rstrip("\r")


def _collect(rows: Iterator[tuple[int, str, str]], name: str) -> TextPairs:
    """Gathers ``(row, src, tgt)``; skips (and counts) rows with an empty side."""
    out = TextPairs([], [], [], name)
    skipped, first = 0, None
    for row, src, tgt in rows:
        src, tgt = normalize_space(src), normalize_space(tgt)
        if not src or not tgt:
            skipped += 1
            first = first or row
            continue
        out.sources.append(src)
        out.targets.append(tgt)
        out.rows.append(row)
    if skipped:
        warnings.warn(f"{name}: skipped {skipped} empty line(s) or pair(s) with an empty side (first at row {first})",
                      stacklevel=3)
    return out


def read_tsv(path: str | Path, src_key: str = "src", tgt_key: str = "tgt") -> TextPairs:
    """``source<TAB>target`` lines (see the module docstring for the policies)."""
    path = Path(path)

    def rows() -> Iterator[tuple[int, str, str]]:
        for i, line in enumerate(_open_lines(path), 1):
            if not line.strip():
                yield i, "", ""
                continue
            fields = line.split("\t")
            if len(fields) != 2:
                raise ValueError(f"{path}, row {i}: expected 2 tab-separated fields (source<TAB>target), found "
                                 f"{len(fields)}: {line[:80]!r}")
            if i == 1 and (fields[0].strip(), fields[1].strip()) == (src_key, tgt_key):
                continue  # header row
            yield i, fields[0], fields[1]

    return _collect(rows(), str(path))


def read_jsonl(path: str | Path, src_key: str = "src", tgt_key: str = "tgt") -> TextPairs:
    """One JSON object a line with string fields ``src_key`` and ``tgt_key``."""
    path = Path(path)

    def rows() -> Iterator[tuple[int, str, str]]:
        for i, line in enumerate(_open_lines(path), 1):
            if not line.strip():
                yield i, "", ""
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as err:
                raise ValueError(f"{path}, row {i}: invalid JSON ({err.msg} at column {err.colno}): "
                                 f"{line[:80]!r}") from None
            except ValueError as err:  # an integer of more than 4300 digits
                raise ValueError(f"{path}, row {i}: invalid JSON ({err}): {line[:80]!r}") from None
            if not isinstance(obj, dict):
                raise ValueError(f"{path}, row {i}: expected a JSON object with keys {src_key!r} and {tgt_key!r}, "
                                 f"got {type(obj).__name__}")
            for key in (src_key, tgt_key):
                if key not in obj:
                    raise ValueError(f"{path}, row {i}: missing key {key!r} (the row has {sorted(obj)}); set "
                                     f"data.init_args.src_key/tgt_key to the names your file uses")
                if not isinstance(obj[key], str):
                    raise ValueError(f"{path}, row {i}: {key!r} must be a string, got {type(obj[key]).__name__}")
                if not encodable(obj[key]):
                    raise ValueError(f"{path}, row {i}: {key!r} holds an unpaired surrogate escape (such as "
                                     f"\\ud800), which is no character; fix the row's text")
            yield i, obj[src_key], obj[tgt_key]

    return _collect(rows(), str(path))


def read_parallel(source_path: str | Path, target_path: str | Path) -> TextPairs:
    """Two line-aligned text files; different line counts raise naming the first line where one ends."""
    src, tgt = Path(source_path), Path(target_path)

    def rows() -> Iterator[tuple[int, str, str]]:
        for i, (a, b) in enumerate(zip_longest(_open_lines(src), _open_lines(tgt)), 1):
            if a is None or b is None:
                short, other = (src, tgt) if a is None else (tgt, src)
                raise ValueError(f"parallel files differ in length: {short} ends at line {i - 1} but {other} has a "
                                 f"line {i}; every source line needs its translation on the same line")
            yield i, a, b

    return _collect(rows(), f"{src} + {tgt}")


def read_pairs(path: str | Sequence[str], src_key: str = "src", tgt_key: str = "tgt") -> TextPairs:
    """Reads by suffix: ``.tsv``/``.tab``, ``.jsonl``/``.json``, or a ``[source_file, target_file]`` pair.

    Args:
        path: one TSV/JSONL file, or two parallel text files.
        src_key, tgt_key: JSONL keys (and the TSV header row that is skipped).
    """
    if not isinstance(path, str):
        paths = list(path)
        if len(paths) == 1:
            path = paths[0]
        elif len(paths) == 2:
            return read_parallel(*paths)
        else:
            raise ValueError(f"expected one TSV/JSONL file or two parallel text files, got {len(paths)} paths: {paths}")
    suffix = Path(path).suffix.lower()
    if suffix in TSV_SUFFIXES:
        return read_tsv(path, src_key, tgt_key)
    if suffix in JSONL_SUFFIXES:
        return read_jsonl(path, src_key, tgt_key)
    raise ValueError(
        f"{path}: unknown parallel-text format {suffix or '(no suffix)'!r}; use .tsv (source<TAB>target), "
        f".jsonl ({{{src_key!r}: ..., {tgt_key!r}: ...}}) or a pair of line-aligned text files [source, target]"
    )


def read_sources(path: str) -> TextPairs:
    """Sentences to translate, one per line, from a file or ``-`` (stdin). Empty lines are kept (they
    translate to an empty output) so outputs stay line-aligned with the input."""
    if path == "-":
        lines = [line.rstrip("\n").rstrip("\r") for line in sys.stdin]
    else:
        lines = list(_open_lines(Path(path)))
    sources = [normalize_space(line) for line in lines]
    return TextPairs(sources, [], list(range(1, len(sources) + 1)), "<stdin>" if path == "-" else path)

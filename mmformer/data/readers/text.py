"""Reading the text formats safely: UTF-8 decoding and delimited rows whose errors name the file and line,
and a file check that never raises on an odd path (too long, a NUL byte)."""

from __future__ import annotations

import codecs
import csv
import io
import json
from collections.abc import Iterable, Iterator
from pathlib import Path


def decode_utf8(data: bytes, name: str, error: type[ValueError] = ValueError) -> str:
    """``data`` as UTF-8 text (a leading byte-order mark dropped, as spreadsheets write one).

    Raises:
        error: invalid UTF-8, naming ``name:<line>`` and the byte offset.
    """
    skip = len(codecs.BOM_UTF8) if data.startswith(codecs.BOM_UTF8) else 0
    try:
        return data[skip:].decode("utf-8")
    except UnicodeDecodeError as err:
        at = skip + err.start  # the byte offset in the file
        line = data.count(b"\n", 0, at) + 1
        raise error(f"{name}:{line}: not valid UTF-8 ({err.reason} at byte {at}); re-encode the file as "
                    f"UTF-8") from None


def read_utf8(path: Path, error: type[ValueError] = ValueError) -> str:
    """The whole file as UTF-8 text (see :func:`decode_utf8`)."""
    return decode_utf8(path.read_bytes(), str(path), error)


def jsonl_lines(path: Path, error: type[ValueError] = ValueError) -> Iterator[tuple[int, str]]:
    """``(1-based line number, line)`` of a UTF-8 text file, split at ``\\n`` only (so line numbers are what an
    editor and ``sed -n`` show; JSON strings cannot hold a raw newline)."""
    for n, line in enumerate(read_utf8(path, error).split("\n"), start=1):
        yield n, line


def json_objects(numbered: Iterable[tuple[int, str]], path: Path, error: type[ValueError], hint: str
                 ) -> Iterator[tuple[int, dict]]:
    """``(line, object)`` for each non-blank line of a JSONL file (``numbered``: ``(line number, text)`` pairs).

    Raises:
        error: a line that is not a JSON object (or holds an integer of more than 4300 digits), naming
            ``path:<line>``, followed by ``hint`` (what the format expects).
    """
    for n, raw in numbered:
        if not raw.strip():
            continue
        try:
            obj = json.loads(raw)
        except ValueError as err:  # JSONDecodeError, or an integer of more than 4300 digits
            raise error(f"{path}:{n}: not a JSON object ({err}); {hint}") from None
        if not isinstance(obj, dict):
            raise error(f"{path}:{n}: a {type(obj).__name__}, not a JSON object; {hint}")
        yield n, obj


def table_rows(path: Path, separator: str, error: type[ValueError] = ValueError
               ) -> tuple[list[str], list[tuple[int, dict[str, str | None]]]]:
    """A delimited table with a header row → ``(header, [(line the row starts on, {column: cell}), ...])``.

    Cells may be quoted (a quoted cell may span lines). A row with more cells than the header keeps the
    extras under the key ``None`` (as :class:`csv.DictReader` does); one with fewer has ``None`` cells.

    Raises:
        error: invalid UTF-8, or a row the csv module cannot split (naming ``path:<line>``), such as a cell
            over its size limit (``csv.field_size_limit()``, 128 KiB).
    """
    reader = csv.DictReader(io.StringIO(read_utf8(path, error), newline=""), delimiter=separator)
    rows = []
    try:
        header = list(reader.fieldnames or [])
        start = reader.line_num + 1
        for row in reader:
            rows.append((start, row))
            start = reader.line_num + 1
    except csv.Error as err:
        raise error(f"{path}:{reader.line_num}: not a valid {'TSV' if separator == chr(9) else 'CSV'} row "
                    f"({err})") from None
    return header, rows


def is_file(path: Path) -> bool:
    """``path.is_file()``, False for a path the OS refuses (too long a name) rather than an ``OSError``."""
    try:
        return path.is_file()
    except (OSError, ValueError):
        return False


def encodable(text: str) -> bool:
    """Whether ``text`` can be written as UTF-8 (JSON's ``"\\ud800"`` escapes decode to lone surrogates, which
    cannot: a tokenizer would fail on them mid-epoch)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True

"""The fuzzing harness of the readers: seeded corruptions of valid files, each one's outcome sorted into
*loaded*, *clear error* or *other*.

* loaded: the reader returned, and the result passes the format's sanity check (finite numbers, the
  documented dtypes and shapes, non-empty audio, UTF-8-encodable text...) with no warning from a library
  (scipy's ``WavFileWarning``, PIL's ``DecompressionBombWarning``: a reader must decide, not warn);
* clear error: a ``ValueError``/``FileNotFoundError``/``TypeError`` (what ``mmformer`` exits 1 on) raised by a
  ``raise`` statement in mmformer's own code whose message names the file, and for row formats the row
  (``<file>:<line>`` or ``<file>, row <n>``; ``has no rows`` names the whole file);
* other: anything else: a foreign exception, a message that names neither, a result that is garbage, a
  library warning on a load, or a case that runs past :data:`CASE_SECONDS` (the hang guard).

Used by ``tests/data/readers/test_fuzz_readers.py`` and ``bench/fuzz_readers.py``.
"""

from __future__ import annotations

import os
import re
import signal
import tempfile
import threading
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import mmformer
from mmformer.cli.errors import _raised_by_mmformer

CASE_SECONDS = 10  # one case (a tiny file) decodes in milliseconds; more is a hang
USER_ERRORS = (ValueError, FileNotFoundError, TypeError)  # what `mmformer` maps to exit 1 (mmformer/cli/errors.py)
_MMFORMER_DIR = os.path.dirname(mmformer.__file__)
_OUTCOMES = ("loaded", "clear", "other")


class CaseTimeout(BaseException):
    """Raised by the alarm when one case runs past :data:`CASE_SECONDS` (a BaseException: readers catch
    ``Exception`` and must not swallow it)."""


@contextmanager
def _deadline(seconds: int) -> Iterator[None]:
    def fire(signum: int, frame: Any) -> None:
        raise CaseTimeout(f"ran past {seconds} s")

    if not hasattr(signal, "SIGALRM") or threading.current_thread() is not threading.main_thread():
        yield  # alarms need the main thread of a POSIX process: no guard elsewhere
        return
    previous = signal.signal(signal.SIGALRM, fire)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


@dataclass
class Case:
    """One corrupted input: what to call, the file names an error must mention, whether it must name a row."""

    call: Callable[[], Any]
    names: tuple[str, ...]
    rows: bool
    check: Callable[[Any], str | None]  # the result → a problem ("garbage: ...") or None
    note: str = ""  # how it was corrupted, for reports


@dataclass
class Tally:
    """Outcome counts of one format; ``others`` keeps the first few "other" outcomes with their reasons."""

    name: str
    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(_OUTCOMES, 0))
    others: list[str] = field(default_factory=list)

    @property
    def tried(self) -> int:
        return sum(self.counts.values())

    def line(self) -> str:
        c = self.counts
        return f"{self.name}: tried {self.tried}, loaded {c['loaded']}, clear errors {c['clear']}, other {c['other']}"


_ROW = r"(:\d+|, row \d+)"


def _names_it(message: str, case: Case) -> bool:
    named = [n for n in case.names if n in message]
    if not named:
        return False
    if not case.rows or "has no rows" in message:
        return True
    return any(re.search(re.escape(n) + _ROW, message) for n in named)


def _library_warning(w: warnings.WarningMessage) -> bool:
    """A warning some library issued (its own category, or from its code), not one of mmformer's UserWarnings."""
    return type(w.message) is not UserWarning or "site-packages" in w.filename or w.filename.startswith(
        os.path.dirname(os.__file__))


def outcome(case: Case) -> tuple[str, str]:
    """``(loaded | clear | other, detail)`` of one case."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            with _deadline(CASE_SECONDS):
                result = case.call()
        except CaseTimeout as err:
            return "other", f"hang: {err}"
        except USER_ERRORS as err:
            if not _raised_by_mmformer(err):
                return "other", f"foreign {type(err).__name__}: {err}"[:300]
            if not _names_it(str(err), case):
                return "other", f"names no {'row' if case.rows else 'file'}: {err}"[:300]
            return "clear", str(err)
        except Exception as err:  # noqa: BLE001 - what the harness is for
            return "other", f"foreign {type(err).__name__}: {err}"[:300]
    library = [w for w in caught if _library_warning(w)]
    if library:
        return "other", f"loaded with a library warning: {library[0].category.__name__}: {library[0].message}"[:300]
    problem = case.check(result)
    return ("other", f"garbage: {problem}") if problem else ("loaded", "")


def run(name: str, cases: Callable[[Path], st.SearchStrategy[Case]], examples: int = 1000,
        strict: bool = True) -> Tally:
    """Fuzzes one format with ``examples`` seeded cases (derandomized: the same cases every run).

    ``cases(root)`` writes the valid base files under ``root`` and gives the strategy of corrupted cases.
    ``strict``: an "other" outcome fails the run (hypothesis then shrinks it to a minimal case and reports
    it); otherwise it is only counted (``bench/fuzz_readers.py``).
    """
    tally = Tally(name)
    with tempfile.TemporaryDirectory(prefix="fuzz_") as tmp:
        strategy = cases(Path(tmp))

        @settings(max_examples=examples, derandomize=True, database=None, deadline=None, print_blob=False,
                  suppress_health_check=list(HealthCheck))
        @given(strategy)
        def one(case: Case) -> None:
            kind, detail = outcome(case)
            tally.counts[kind] += 1
            if kind == "other":
                if len(tally.others) < 20:
                    tally.others.append(f"{case.note}: {detail}")
                assert not strict, f"{name}: {case.note}: {detail}"

        with _no_local_constants():
            one()
    return tally


@contextmanager
def _no_local_constants() -> Iterator[None]:
    """Hypothesis mixes literals from the local modules imported so far (``sys.modules``) into what it draws, so
    the same seed would draw other cases after other tests ran; without them a seed draws the same cases in
    every process (a private hook of hypothesis 6.1xx: where it is missing, cases may vary with what was imported)."""
    from hypothesis.internal.conjecture import providers

    hook = getattr(providers, "_get_local_constants", None)
    if hook is None or not hasattr(providers, "Constants"):
        yield
        return
    cache = getattr(getattr(providers, "CONSTANTS_CACHE", None), "cache", {})  # pools drawn from before
    providers._get_local_constants = providers.Constants  # an empty pool
    cache.clear()
    try:
        yield
    finally:
        providers._get_local_constants = hook
        cache.clear()


# --- byte-level corruptions of a valid file -------------------------------------------------------------------------

_INTERESTING = [b"\x00", b"\xff", b"\x00\x00\x00\x00", b"\xff\xff\xff\xff", b"\x7f\xff\xff\xff", b"\x80\x00\x00\x00",
                b"\xff\xff\xff\x7f", b"\x00\x00\x80\x7f", b"\x00\x00\xc0\x7f", b"\n", b"\r", b"\t", b",", b'"', b"{",
                b"\xc3\x28", b"\xed\xa0\x80", b"\xef\xbb\xbf", b"NaN", b"1e999", b"-1"]


@st.composite
def corrupted(draw: st.DrawFn, bases: list[bytes]) -> tuple[bytes, str]:
    """A valid file (one of ``bases``) with 1-4 byte-level edits: a bit flip, an overwrite with an interesting
    value (0, 0xFF.., INT_MAX, NaN/inf floats, a newline, invalid UTF-8...), an insertion, a deletion, a
    duplicated range, or a truncation. Returns ``(bytes, a note of the edits)``."""
    data = bytearray(draw(st.sampled_from(bases)))
    notes = []
    for _ in range(draw(st.integers(1, 4))):
        op = draw(st.sampled_from(["flip", "set", "insert", "delete", "dup", "truncate"]))
        at = draw(st.integers(0, max(len(data) - 1, 0)))
        if op == "flip" and data:
            data[at] ^= 1 << draw(st.integers(0, 7))
        elif op == "set":
            value = draw(st.sampled_from(_INTERESTING) | st.binary(min_size=1, max_size=8))
            data[at:at + len(value)] = value
        elif op == "insert":
            data[at:at] = draw(st.sampled_from(_INTERESTING) | st.binary(min_size=1, max_size=16))
        elif op == "delete":
            del data[at:at + draw(st.integers(1, 64))]
        elif op == "dup":
            n = draw(st.integers(1, 64))
            data[at:at] = data[at:at + n]
        elif op == "truncate":
            del data[at:]
        notes.append(f"{op}@{at}")
    return bytes(data), "bytes " + ",".join(notes)


def json_values() -> st.SearchStrategy[Any]:
    """Any JSON value (NaN and infinities included, as Python's json writes them), with awkward leaves: huge
    integers, empty/blank strings, number-like strings, path-like strings, control characters, lone surrogates."""
    leaves = (st.none() | st.booleans() | st.integers() | st.sampled_from([10 ** 400, -(10 ** 30), 2 ** 63])
              | st.floats(allow_nan=True, allow_infinity=True) | st.text(max_size=20) | awkward_strings())
    return st.recursive(leaves, lambda kids: st.lists(kids, max_size=3) | st.dictionaries(st.text(max_size=4), kids,
                                                                                          max_size=3), max_leaves=6)


def awkward_strings() -> st.SearchStrategy[str]:
    return st.sampled_from(["", " ", "\t", "nan", "NaN", "inf", "-inf", "1e999", "-1", "0", "1,2", "[1, 2]", "[]",
                            "[1, null]", ".", "/", "..", "../x.png", "a\x00b", "x" * 300, "\ud800", "é", "\u2028",
                            "\x85", "\x1c", "true", "null", "1" * 5000])

"""Every user format under 1,000 seeded corruptions: each one loads (and is not garbage) or is mmformer's own
error naming the file (and row); never a foreign exception, a library warning on a load, or a hang.

Run with ``-s`` to see the counts (``bench/fuzz_readers.py`` prints the same table); the cases and the
outcome rules are in ``fuzzing.py`` and ``fuzz_formats.py``.
"""

from __future__ import annotations

import time
import warnings
from pathlib import Path

import pytest

from mmformer.data.readers.manifest import read_table
from tests.data.readers import fuzzing
from tests.data.readers.fuzz_formats import FORMATS
from tests.data.readers.fuzzing import Case, outcome, run

EXAMPLES = 1000


@pytest.mark.parametrize("name", list(FORMATS))
def test_every_corruption_loads_or_is_a_clear_error(name: str) -> None:
    tally = run(name, FORMATS[name], EXAMPLES)  # strict: an "other" case fails, shrunk to a minimal one
    print(tally.line())
    assert tally.tried >= EXAMPLES
    assert tally.counts["other"] == 0, tally.others
    assert tally.counts["loaded"] > 0 and tally.counts["clear"] > 0  # the corruptions span both outcomes


def test_the_harness_sorts_outcomes_by_the_rules(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    ok = lambda _: None  # noqa: E731
    bad = tmp_path / "m.jsonl"
    bad.write_text('{"a": 1}\n[1]\n')
    assert outcome(Case(lambda: read_table(bad), (str(bad),), True, ok))[0] == "clear"  # names m.jsonl:2
    assert outcome(Case(lambda: read_table(bad), ("elsewhere.jsonl",), True, ok))[0] == "other"  # names no file
    assert outcome(Case(lambda: int("x"), (str(bad),), False, ok))[1].startswith("foreign ValueError")
    assert outcome(Case(lambda: 1, (), False, lambda r: "NaN"))[1] == "garbage: NaN"
    warn = lambda: warnings.warn("odd", RuntimeWarning)  # noqa: E731
    assert outcome(Case(warn, (), False, ok))[1].startswith("loaded with a library warning")
    monkeypatch.setattr(fuzzing, "CASE_SECONDS", 1)
    assert outcome(Case(lambda: time.sleep(5), (), False, ok))[1].startswith("hang")


def test_the_bench_script_prints_one_line_per_format(capsys: pytest.CaptureFixture[str]) -> None:
    import importlib.util

    spec = importlib.util.spec_from_file_location("fuzz_readers", Path(__file__).parents[3] / "bench" / "fuzz_readers.py")
    bench = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    spec.loader.exec_module(bench)  # type: ignore[union-attr]
    assert bench.main(["--examples", "20", "--format", "D4RL npz", "--format", "audio files"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split(":")[0] for line in lines] == ["D4RL npz", "audio files"]
    assert all(", other 0 " in line and "tried 20," in line for line in lines), lines

"""Every user format under 1,000 seeded corruptions: each one loads (and is not garbage) or is mmformer's own
error naming the file (and row); never a foreign exception, a library warning on a load, or a hang.

Run with ``-s`` to see the counts (``bench/fuzz_readers.py`` prints the same table); the cases and the
outcome rules are in ``fuzzing.py`` and ``fuzz_formats.py``.
"""

from __future__ import annotations

import pytest

from tests.data.readers.fuzz_formats import FORMATS
from tests.data.readers.fuzzing import run

EXAMPLES = 1000


@pytest.mark.parametrize("name", list(FORMATS))
def test_every_corruption_loads_or_is_a_clear_error(name: str) -> None:
    tally = run(name, FORMATS[name], EXAMPLES)  # strict: an "other" case fails, shrunk to a minimal one
    print(tally.line())
    assert tally.tried >= EXAMPLES
    assert tally.counts["other"] == 0, tally.others
    assert tally.counts["loaded"] > 0 and tally.counts["clear"] > 0  # the corruptions span both outcomes

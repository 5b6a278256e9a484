"""The README's ```python examples run as written (```py blocks need a trained checkpoint or your own
files; tests/test_pairings.py runs the pairing section's over generated ones)."""

import re
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"
BLOCKS = re.findall(r"```python\n(.*?)```", README.read_text(), re.S)


@pytest.mark.parametrize("code", BLOCKS, ids=[f"block{i}" for i in range(len(BLOCKS))])
def test_readme_example_runs(code: str) -> None:
    exec(compile(code, str(README), "exec"), {})


def test_readme_gives_the_two_setup_commands() -> None:
    text = README.read_text()
    assert "make demo" in text and "make test" in text

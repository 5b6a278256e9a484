"""The user documentation's text for tests that run its examples: README.md and every page under docs/."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
DOC_FILES = [README, *sorted((ROOT / "docs").rglob("*.md"))]
_HEADING = re.compile(r"(#{1,6}) +(.*?) *#*$")


def _headings(lines: list[str]) -> list[tuple[int, int, str]]:
    """``(line index, level, title)`` of each markdown heading, skipping ``# comments`` inside code fences."""
    found, fence = [], False
    for i, line in enumerate(lines):
        if line.lstrip().startswith("```"):
            fence = not fence
        elif not fence and (m := _HEADING.match(line)):
            found.append((i, len(m[1]), m[2]))
    return found


def doc_section(title: str) -> str:
    """The text under the heading ``title`` (any level) in README.md or docs/, up to the next heading of the
    same or a higher level (its subsections included). Exactly one heading in the docs may carry the title."""
    hits = []
    for path in DOC_FILES:
        lines = path.read_text().splitlines()
        heads = _headings(lines)
        for k, (i, level, text) in enumerate(heads):
            if text == title:
                end = next((j for j, lv, _ in heads[k + 1:] if lv <= level), len(lines))
                hits.append((path, "\n".join(lines[i + 1:end]) + "\n"))
    assert len(hits) == 1, f"heading {title!r}: found in {[str(p.relative_to(ROOT)) for p, _ in hits]}, expected once"
    return hits[0][1]


def python_blocks() -> list[tuple[str, str]]:
    """Every ```python block of the docs as ``(where, code)``; ```py blocks need a trained checkpoint or the
    reader's own files, and are not run."""
    return [(f"{path.relative_to(ROOT)}#{k}", code) for path in DOC_FILES
            for k, code in enumerate(re.findall(r"```python\n(.*?)```", path.read_text(), re.S))]

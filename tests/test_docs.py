"""The user documentation: README.md and the docs/ site (mkdocs.yml).

Its ```python examples run as written (```py blocks need a trained checkpoint or your own files;
tests/test_pairings.py runs the pairing page's over generated ones), and the site builds with
``mkdocs build --strict``, so a broken link between pages or an API name that no longer exists fails.
"""

from __future__ import annotations

import importlib
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.doc_sections import README, ROOT, python_blocks

BLOCKS = python_blocks()
ENV = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}


@pytest.mark.parametrize("where, code", BLOCKS, ids=[w for w, _ in BLOCKS])
def test_docs_python_example_runs(where: str, code: str) -> None:
    exec(compile(code, where, "exec"), {})


def test_readme_gives_the_two_setup_commands() -> None:
    text = README.read_text()
    assert "make demo" in text and "make test" in text


def test_readme_links_point_at_files_that_exist() -> None:
    links = [t for t in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", README.read_text()) if "://" not in t]
    assert any(t.startswith("docs/") for t in links), "the README links into docs/"
    assert [t for t in links if not (ROOT / t).exists()] == []


def _build(config: Path, site: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "-f", str(config), "-d", str(site)],
                          cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=120)


@pytest.mark.slow
def test_docs_site_builds_with_warnings_as_errors(tmp_path: Path) -> None:
    out = _build(ROOT / "mkdocs.yml", tmp_path / "site")
    assert out.returncode == 0, out.stderr[-4000:]
    assert (tmp_path / "site" / "api" / "backbone" / "index.html").is_file()


@pytest.mark.slow
@pytest.mark.parametrize("page, error", [
    ("See [the recipes](recipes.md).\n", "recipes.md"),  # a page that does not exist
    ("::: mmformer.backbone.NoSuchThing\n", "mmformer.backbone.NoSuchThing"),  # an API name that does not exist
], ids=["broken-link", "unknown-api-name"])
def test_strict_build_fails_on(tmp_path: Path, page: str, error: str) -> None:
    config = yaml.safe_load((ROOT / "mkdocs.yml").read_text())
    config.update(docs_dir=str(tmp_path / "docs"), nav=["index.md"], theme={"name": "mkdocs"})
    python = next(p for p in config["plugins"] if isinstance(p, dict) and "mkdocstrings" in p)
    handler = python["mkdocstrings"]["handlers"]["python"]  # paths from this config's folder: the repository's
    handler["paths"] = [str(ROOT)]
    handler["options"]["extensions"] = [str(ROOT / e) for e in handler["options"]["extensions"]]
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "index.md").write_text("# Page\n\n" + page)
    (tmp_path / "mkdocs.yml").write_text(yaml.safe_dump(config))
    out = _build(tmp_path / "mkdocs.yml", tmp_path / "site")
    assert out.returncode != 0 and error in out.stderr, out.stderr[-4000:]


def test_readme_recipe_table_lists_every_recipe() -> None:
    """The README's table (which docs/recipes.md includes) has one row per ``tasks/*.yaml``."""
    table = README.read_text().split("[start:recipes]", 1)[1].split("[end:recipes]", 1)[0]
    rows = re.findall(r"^\| `(tasks/[^`]+\.yaml)` \|", table, re.M)
    assert sorted(rows) == sorted(f"tasks/{p.name}" for p in (ROOT / "tasks").glob("*.yaml"))


def test_docs_pages_named_in_code_and_recipes_exist() -> None:
    """Comments, messages and recipe headers point readers at ``docs/<page>.md``: every such page exists."""
    named = {(path.relative_to(ROOT), page) for folder in ("mmformer", "tasks", "configs", "bench")
             for path in (ROOT / folder).rglob("*") if path.suffix in (".py", ".yaml")
             for page in re.findall(r"\bdocs/[\w/]+\.md", path.read_text())}
    assert named, "no docs page is named outside docs/"
    assert sorted((str(p), page) for p, page in named if not (ROOT / page).is_file()) == []


@pytest.mark.slow  # imports every module the docs name (timm's among them)
def test_every_mmformer_name_in_the_docs_exists() -> None:
    """Each dotted ``mmformer.x.y`` the README or a docs page names imports (a module) or resolves (an attribute
    of one), so a renamed or moved API fails here until the docs follow it."""
    texts = [README.read_text(), *(p.read_text() for p in sorted((ROOT / "docs").rglob("*.md")))]
    names = sorted({n for text in texts for n in re.findall(r"\bmmformer(?:\.[A-Za-z_]\w*)+", text)})
    assert len(names) > 50, names
    assert [n for n in names if not _resolves(n)] == []


def _resolves(name: str) -> bool:
    """Whether ``name`` is a module, or attributes of the longest module prefix of it."""
    parts = name.split(".")
    for k in range(len(parts), 0, -1):
        module = ".".join(parts[:k])
        try:
            obj: object = importlib.import_module(module)
        except ModuleNotFoundError as e:
            if e.name is None or not module.startswith(e.name):
                raise  # the module exists but one of its own imports is missing
            continue
        for attr in parts[k:]:
            if not hasattr(obj, attr):
                return False
            obj = getattr(obj, attr)
        return True
    return False

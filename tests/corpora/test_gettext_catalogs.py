"""The gettext second corpus: catalogs parsed (context, plurals, header), filtered, deduplicated, split by
source without overlap, cached, and clear errors for a missing folder or a broken catalog."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import pytest

from corpora import gettext_catalogs as gc


def write_mo(path: Path, entries: dict[str, str]) -> None:
    """A GNU .mo file (little endian, revision 0): header, then the two tables, then the strings."""
    keys = sorted(entries)
    ids, strs = b"", b""
    id_tab, str_tab = [], []
    for k in keys:
        kb, vb = k.encode(), entries[k].encode()
        id_tab.append((len(kb), len(ids)))
        str_tab.append((len(vb), len(strs)))
        ids += kb + b"\0"
        strs += vb + b"\0"
    n = len(keys)
    start = 7 * 4 + 16 * n  # header + both tables
    out = struct.pack("<7I", 0x950412DE, 0, n, 28, 28 + 8 * n, 0, 0)
    out += b"".join(struct.pack("<2I", ln, start + off) for ln, off in id_tab)
    out += b"".join(struct.pack("<2I", ln, start + len(ids) + off) for ln, off in str_tab)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(out + ids + strs)


HEADER = {"": "Content-Type: text/plain; charset=UTF-8\n"}


@pytest.fixture
def locale(tmp_path: Path) -> Path:
    root = tmp_path / "locale"
    write_mo(root / "es/LC_MESSAGES/alpha.mo", HEADER | {
        "Open file": "Abrir archivo", "menu\x04Quit": "Salir", "%d file\x00%d files": "%d archivo\x00%d archivos",
        "could not write '%s'": "no se pudo escribir '%s'", "untranslated": "",
        " ".join(["word"] * 50): "demasiado largo"} | {f"message {i}": f"mensaje {i}" for i in range(40)})
    write_mo(root / "es/LC_MESSAGES/beta.mo", HEADER | {"Open file": "Abre el archivo", "Save  as\t...": "Guardar como..."})
    return root


def test_catalog_pairs_drop_context_plurals_and_the_header(locale: Path) -> None:
    pairs = dict(gc.read_catalog(locale / "es/LC_MESSAGES/alpha.mo"))
    assert pairs["Quit"] == "Salir" and pairs["Open file"] == "Abrir archivo"
    assert "" not in pairs and not any("%d file" in k for k in pairs)
    assert dict(gc.read_catalog(locale / "es/LC_MESSAGES/beta.mo"))["Save as ..."] == "Guardar como..."


def test_build_filters_dedupes_splits_disjointly_and_caches(locale: Path, tmp_path: Path) -> None:
    paths = gc.build(tmp_path / "data", locale_dir=locale, num_val=5, num_test=5, max_train=None)
    rows = {s: [json.loads(l) for l in p.read_text().splitlines()] for s, p in paths.items()}
    assert [len(rows[s]) for s in ("val", "test")] == [5, 5]
    every = [r for split in rows.values() for r in split]
    sources = [r["src"] for r in every]
    assert len(sources) == len(set(sources)) == 44  # 40 + Open file + Quit + could not write + Save as
    assert {r["tgt"] for r in every if r["src"] == "Open file"} == {"Abrir archivo"}  # first catalog wins
    assert not any(len(s.split()) > 40 for s in sources) and "untranslated" not in sources
    assert gc.build(tmp_path / "data", locale_dir=locale, num_val=5, num_test=5, max_train=None) == paths  # cached
    capped = gc.build(tmp_path / "data", locale_dir=locale, num_val=5, num_test=5, max_train=10)
    assert capped["train"] != paths["train"] and len(capped["train"].read_text().splitlines()) == 10
    assert capped["test"].read_text() == paths["test"].read_text()  # the cap moves no pair between val and test


def test_missing_catalogs_and_a_broken_one_are_clear_errors(locale: Path, tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"no gettext catalogs .* install packages translated to 'de'"):
        gc.build(tmp_path / "data", lang="de", locale_dir=locale)
    bad = locale / "es/LC_MESSAGES/broken.mo"
    bad.write_bytes(b"\x00\x01not a catalog")
    with pytest.raises(ValueError, match="broken.mo: not a readable gettext catalog"):
        gc.build(tmp_path / "data", locale_dir=locale, num_val=5, num_test=5)
    with pytest.raises(ValueError, match="only 44 pairs"):
        gc.split_pairs([(f"s{i}", "t", "c") for i in range(44)], 40, 4, None)

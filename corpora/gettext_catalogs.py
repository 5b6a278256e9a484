"""A second translation corpus, of another domain: software messages from the system's gettext catalogs.

Every Debian package with translated messages installs ``/usr/share/locale/<lang>/LC_MESSAGES/<domain>.mo``:
its English ``msgid`` strings (menu items, errors, help lines, with ``%s`` placeholders, ``_`` accelerators
and option names) and their human translations. Python's :mod:`gettext` reads them. Where the embedded
corpus is WordNet glosses machine-translated by Apertium, this one is short technical text translated by
people — the domain a user who localizes software brings.

Policies (:func:`build`):

- plural entries (``msgid_plural``) and the catalog header are skipped; a ``msgctxt`` is dropped from the
  source (``"ctx\\x04text"`` → ``"text"``); whitespace is normalized;
- pairs with an empty side, a source over ``max_words`` words, or a source that repeats one already taken
  (catalogs in sorted order, first wins) are skipped;
- the split is by a hash of the source, so no English string occurs in two splits; validation and test
  take ``num_val`` and ``num_test`` pairs, training at most ``max_train`` (None = the rest).

Output, in ``data/gettext_<lang>_<hash>/``: ``train.jsonl  val.jsonl  test.jsonl``, one
``{"src", "tgt", "catalog"}`` object per line (the translation DataModule's JSONL format), and
``meta.json`` listing every catalog read with its SHA-256, so two machines with different packages build
different folders instead of sharing one name.
"""

from __future__ import annotations

import gettext
import hashlib
from pathlib import Path

from corpora.manifests import build_once, cache_folder, write_jsonl
from mmformer.data.readers.text_pairs import normalize_space

LOCALE_DIR = "/usr/share/locale"
SPLITS = ("train", "val", "test")


def catalogs(lang: str, locale_dir: str | Path = LOCALE_DIR) -> list[Path]:
    """The ``.mo`` files of ``lang`` (sorted); raises naming the folder when there are none."""
    folder = Path(locale_dir) / lang / "LC_MESSAGES"
    found = sorted(folder.glob("*.mo"))
    if not found:
        raise FileNotFoundError(f"no gettext catalogs (*.mo) in {folder}: install packages translated to {lang!r} "
                                f"(their locale files must not be excluded by dpkg's path-exclude), or pass your own "
                                f"pairs with data.init_args.train_path")
    return found


def read_catalog(path: Path) -> list[tuple[str, str]]:
    """``(msgid, msgstr)`` pairs of one catalog, context dropped, plurals and the header skipped."""
    with open(path, "rb") as f:
        try:
            catalog = gettext.GNUTranslations(f)._catalog  # type: ignore[attr-defined]
        except (OSError, UnicodeDecodeError) as e:
            raise ValueError(f"{path}: not a readable gettext catalog ({e}); remove it or pass locale_dir") from e
    pairs = []
    for key, value in catalog.items():
        if isinstance(key, tuple) or not key:  # (msgid, n) = a plural form; "" = the header
            continue
        pairs.append((normalize_space(key.split("\x04")[-1]), normalize_space(value)))
    return pairs


def _bucket(source: str, buckets: int) -> int:
    return int.from_bytes(hashlib.sha256(source.encode()).digest()[:8], "big") % buckets


def split_pairs(pairs: list[tuple[str, str, str]], num_val: int, num_test: int,
                max_train: int | None) -> dict[str, list[tuple[str, str, str]]]:
    """``(src, tgt, catalog)`` → splits by source hash: a deterministic order, then val/test take theirs."""
    ordered = sorted(pairs, key=lambda p: (_bucket(p[0], 1 << 62), p[0]))
    if num_val + num_test >= len(ordered):
        raise ValueError(f"only {len(ordered)} pairs: fewer than num_val + num_test + 1 = {num_val + num_test + 1}")
    train = ordered[num_val + num_test:]
    return {"val": ordered[:num_val], "test": ordered[num_val:num_val + num_test],
            "train": train if max_train is None else train[:max_train]}


def build(data_dir: str | Path = "data", lang: str = "es", locale_dir: str | Path = LOCALE_DIR,
          max_words: int = 40, num_val: int = 1000, num_test: int = 1000,
          max_train: int | None = 28000) -> dict[str, Path]:
    """Builds (once) the English→``lang`` pairs of the installed catalogs; returns ``{split: manifest}``.

    Args:
        lang: the target language's locale folder name (``es``, ``de``, ``fr``, ``pt_BR``...).
        max_words: longest source kept, in whitespace words.
        num_val, num_test: pairs in validation and test.
        max_train: most training pairs (the default: the corpus size of docs/tasks/translation.md's measurements).
    """
    files = catalogs(lang, locale_dir)
    digests = {f.name: hashlib.sha256(f.read_bytes()).hexdigest()[:16] for f in files}
    settings = {"v": 1, "lang": lang, "catalogs": digests, "max_words": max_words, "num_val": num_val,
                "num_test": num_test, "max_train": max_train}

    def make(tmp: Path, _final: Path) -> dict:
        seen: set[str] = set()
        pairs = []
        for f in files:
            for src, tgt in read_catalog(f):
                if src and tgt and len(src.split()) <= max_words and src not in seen:
                    seen.add(src)
                    pairs.append((src, tgt, f.stem))
        splits = split_pairs(pairs, num_val, num_test, max_train)
        return {split: {"pairs": write_jsonl(tmp / f"{split}.jsonl",
                                             ({"src": s, "tgt": t, "catalog": c} for s, t, c in splits[split]))}
                for split in SPLITS} | {"candidates": len(pairs)}

    return build_once(cache_folder(data_dir, f"gettext_{lang}", settings), SPLITS, make, settings)


__all__ = ["build", "catalogs", "read_catalog", "split_pairs"]

"""WordNet sentence extraction and the Apertium-translated corpus: parsing, alignment, filtering, splits, cache."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from corpora import apertium
from corpora.apertium import build_wordnet_corpus, has_marks, match_first_letter_case, translate
from corpora.wordnet import normalize_space, parse_data_lines, read_wordnet, split_gloss

LICENSE = "  1 This software and database is being provided to you, the LICENSEE, by  \n"


def test_gloss_splits_into_definitions_and_quoted_examples() -> None:
    gloss = (' the act of taking revenge (harming someone); especially in the next life; "Vengeance is mine; '
             'I will repay, saith the Lord"--Romans 12:19; "he swore  vengeance on the man"  ')
    assert split_gloss(gloss) == [
        ("the act of taking revenge (harming someone)", False),
        ("especially in the next life", False),
        ("Vengeance is mine; I will repay, saith the Lord", True),  # a ; inside quotes stays in the example
        ("he swore vengeance on the man", True),  # attribution "--Romans 12:19" dropped, spaces normalized
    ]


def test_data_lines_skip_the_license_header_and_keep_the_synset() -> None:
    line = ('01034950 32 v 01 stonewall 0 003 @ 02557199 v 0000 | obstruct or hinder any discussion; '
            '"Nixon stonewalled the Watergate investigation"  \n')
    got = list(parse_data_lines([LICENSE, line], "verb"))
    assert [(s.text, s.example, s.synset) for s in got] == [
        ("obstruct or hinder any discussion", False, "verb:01034950"),
        ("Nixon stonewalled the Watergate investigation", True, "verb:01034950"),
    ]


def _fake_wordnet(root: Path, glosses: dict[str, list[str]]) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    for pos in ("noun", "verb", "adj", "adv"):
        synsets = [f"{10000000 + i:08d} 03 n 01 w 0 000 | {g}  \n" for i, g in enumerate(glosses.get(pos, []))]
        lines = [LICENSE] + synsets
        (root / f"data.{pos}").write_text("".join(lines))
    return root


def test_read_wordnet_filters_length_and_deduplicates_across_case_and_final_punctuation(tmp_path: Path) -> None:
    root = _fake_wordnet(tmp_path, {
        "noun": ['a small domesticated carnivorous mammal; "The cat sat on the mat."', "too short"],
        "verb": ['sit down on a chair; "the cat sat on the mat"', "x " * 30],
    })
    got = read_wordnet(root, min_words=4, max_words=25)
    assert [s.text for s in got] == ["a small domesticated carnivorous mammal", "The cat sat on the mat.",
                                     "sit down on a chair"]


def test_read_wordnet_on_the_installed_database() -> None:
    got = read_wordnet(parts_of_speech=("adv",))  # the smallest file keeps this fast
    assert len(got) > 3000 and any(s.example for s in got) and any(not s.example for s in got)
    assert all(4 <= len(s.text.split()) <= 25 and s.text == normalize_space(s.text) for s in got)


def test_missing_wordnet_names_the_package(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="apt-get install wordnet-base"):
        read_wordnet(tmp_path)


def test_first_letter_case_follows_the_source() -> None:
    assert match_first_letter_case("that is it", "Aquello es") == "aquello es"
    assert match_first_letter_case("The dog runs", "el perro corre") == "El perro corre"
    assert match_first_letter_case("(law) a breach", "(ley) una ruptura") == "(ley) una ruptura"


SENTENCES = ["that is it.", "an entity that has physical existence", "The restaurant is rated highly in the food guide",
             "twist into a state of deformity", "the xyzzy blorfed"]  # "food guide" + "twist" once merged across lines


def test_apertium_batch_translation_is_aligned_and_independent_of_neighbours() -> None:
    batch = translate(SENTENCES, jobs=2, progress=False)
    alone = [translate([s], progress=False)[0] for s in SENTENCES]
    assert batch == alone  # no sentence leaks into another: casing fixed, words never moved across sentences
    assert batch[1] == "una entidad que tiene existencia física"  # lowercase like its source
    assert batch[2].startswith("El restaurante") and batch[2].endswith("guía alimentaria")
    assert [has_marks(t) for t in batch] == [False, False, False, False, True]  # *xyzzy *blorfed


def test_alignment_survives_an_apertium_run_that_merges_lines(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []

    class Done:
        returncode, stderr = 0, ""

        def __init__(self, sents: list[str]) -> None:  # merges the first two sentences of a multi-sentence input
            self.stdout = "\n\n".join([" ".join(sents[:2])] + sents[2:] if len(sents) > 1 else sents) + "\n"

    def fake_run(cmd: list[str], input: str, **kw: object) -> Done:
        calls.append(input)
        return Done(input.strip("\n").split("\n\n"))

    monkeypatch.setattr(apertium.subprocess, "run", fake_run)
    assert apertium._run_apertium(["a", "b", "c", "d"], "eng-spa") == ["a", "b", "c", "d"]
    assert len(calls) > 1


def test_missing_apertium_names_the_packages(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(apertium.shutil, "which", lambda name: None)
    with pytest.raises(FileNotFoundError, match="apt-get install apertium apertium-eng-spa"):
        translate(["hello"])


def test_corpus_splits_share_no_source_test_holds_examples_and_the_cache_is_reused(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    examples = ['"the dog runs in the park"', '"she reads a long book"', '"we eat bread every day"',
                '"the children play in the garden"', '"he drinks cold water"', '"the house is very big"',
                '"the zorbleflux grunched loudly"']
    glosses = [f"a gloss about the {w} of things" for w in ("color", "size", "shape", "weight", "age", "price")]
    root = _fake_wordnet(tmp_path / "wn", {"noun": glosses + ["; ".join(examples)]})
    (tmp_path / "data" / "wordnet_eng_spa-stale.tmp-1").mkdir(parents=True)  # an interrupted build's leftovers
    out = build_wordnet_corpus(tmp_path / "data", val_size=2, test_size=2, wordnet_dir=str(root))
    rows = {s: [line.split("\t") for line in (out / f"{s}.tsv").read_text().splitlines()]
            for s in ("train", "val", "test")}
    assert [len(rows[s]) for s in ("train", "val", "test")] == [8, 2, 2]  # 13 sentences, 1 dropped (unknown words)
    sources = [r[0] for s in rows.values() for r in s]
    assert len(sources) == len(set(sources)) and "the zorbleflux grunched loudly" not in sources
    assert all(r[0].strip('"') in " ".join(examples) for s in ("val", "test") for r in rows[s])
    assert all(not has_marks(r[1]) and r[1] for s in rows.values() for r in s)
    meta = json.loads((out / "meta.json").read_text())
    assert meta["splits"]["train"]["pairs"] == 8 and meta["dropped_marked"] == 1

    monkeypatch.setattr(apertium, "translate", lambda *a, **k: pytest.fail("the cached corpus was rebuilt"))
    assert build_wordnet_corpus(tmp_path / "data", val_size=2, test_size=2, wordnet_dir=str(root)) == out
    settings = apertium.corpus_settings(val_size=3, test_size=2, wordnet_dir=str(root))
    other = apertium.corpus_dir(tmp_path / "data", settings)
    assert other != out  # other settings, other cache

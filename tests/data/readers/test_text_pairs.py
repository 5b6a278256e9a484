"""Parallel-text readers (TSV, JSONL, line-aligned files) and their errors; the train-tokenizer command."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from mmformer.data.readers.text_pairs import read_pairs, read_sources
from mmformer.cli.train_tokenizer import main as train_tokenizer
from mmformer.tokenizers.sentencepiece_vocab import SentencePieceVocab


def write(path: Path, text: str) -> str:
    path.write_text(text, encoding="utf-8")
    return str(path)


def test_tsv_skips_header_and_blank_lines_keeping_row_numbers(tmp_path: Path) -> None:
    p = write(tmp_path / "a.tsv", "src\ttgt\nthe cat\tel gato\n\n  a   dog \tun perro\r\nonly source\t \n")
    with pytest.warns(UserWarning, match=r"skipped 2 empty line\(s\).*first at row 3"):
        got = read_pairs(p)
    assert got.sources == ["the cat", "a dog"] and got.targets == ["el gato", "un perro"] and got.rows == [2, 4]


@pytest.mark.parametrize("line, fields", [("no tab here", 1), ("a\tb\tc", 3)])
def test_malformed_tsv_row_names_file_and_row(tmp_path: Path, line: str, fields: int) -> None:
    p = write(tmp_path / "bad.tsv", f"one\tuno\n{line}\n")
    with pytest.raises(ValueError, match=rf"bad.tsv, row 2: expected 2 tab-separated fields .* found {fields}"):
        read_pairs(p)


def test_jsonl_with_custom_keys(tmp_path: Path) -> None:
    rows = [{"en": "the cat", "es": "el gato", "id": 7}, {"en": "a dog", "es": "un perro"}]
    p = write(tmp_path / "a.jsonl", "\n".join(json.dumps(r) for r in rows) + "\n")
    got = read_pairs(p, src_key="en", tgt_key="es")
    assert (got.sources, got.targets, got.rows) == (["the cat", "a dog"], ["el gato", "un perro"], [1, 2])


@pytest.mark.parametrize("line, message", [
    ('{"src": "a", "tgt": "b"', r"row 2: invalid JSON"),
    ('["a", "b"]', r"row 2: expected a JSON object"),
    ('{"src": "a", "target": "b"}', r"row 2: missing key 'tgt' \(the row has \['src', 'target'\]\)"),
    ('{"src": "a", "tgt": 3}', r"row 2: 'tgt' must be a string, got int"),
])
def test_malformed_jsonl_row_names_file_and_row(tmp_path: Path, line: str, message: str) -> None:
    p = write(tmp_path / "bad.jsonl", '{"src": "x", "tgt": "y"}\n' + line + "\n")
    with pytest.raises(ValueError, match="bad.jsonl, " + message):
        read_pairs(p)


def test_parallel_files_align_by_line_and_unequal_lengths_name_the_line(tmp_path: Path) -> None:
    en = write(tmp_path / "t.en", "the cat\na dog\nthe sun\n")
    es = write(tmp_path / "t.es", "el gato\nun perro\nel sol\n")
    got = read_pairs([en, es])
    assert got.sources == ["the cat", "a dog", "the sun"] and got.targets[2] == "el sol"
    short = write(tmp_path / "short.es", "el gato\nun perro\n")
    with pytest.raises(ValueError, match=r"short.es ends at line 2 but .*t.en has a line 3"):
        read_pairs([en, short])


def test_unknown_format_missing_file_and_bad_encoding_are_explained(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"unknown parallel-text format '.csv'.*\.tsv.*\.jsonl"):
        read_pairs(write(tmp_path / "a.csv", "a,b\n"))
    with pytest.raises(FileNotFoundError, match="nope.tsv does not exist"):
        read_pairs(str(tmp_path / "nope.tsv"))
    (tmp_path / "latin1.tsv").write_bytes("caf\xe9\tcaf\xe9\n".encode("latin-1"))
    with pytest.raises(ValueError, match="latin1.tsv, row 1: not valid UTF-8"):
        read_pairs(str(tmp_path / "latin1.tsv"))
    with pytest.raises(ValueError, match="got 3 paths"):
        read_pairs(["a", "b", "c"])


def test_prediction_sources_keep_empty_lines_for_alignment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    got = read_sources(write(tmp_path / "in.txt", "the cat\n\n  a dog\n"))
    assert (got.sources, got.rows) == (["the cat", "", "a dog"], [1, 2, 3])
    monkeypatch.setattr("sys.stdin", io.StringIO("hello world\n"))
    assert read_sources("-").sources == ["hello world"]


def test_train_tokenizer_command_reads_text_and_tsv_and_encodes_unseen_characters(
        tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    words = "the cat dog sun moon runs sleeps eats big small red green".split()
    text = write(tmp_path / "mono.txt", "\n".join(f"{a} {b} {c}" for a in words for b in words[:4] for c in words[-4:]))
    tsv = write(tmp_path / "pairs.tsv", "el gato\tthe cat\nun perro\ta dog\n")
    out = tmp_path / "spm" / "m"
    assert train_tokenizer(["--input", text, tsv, "--output", str(out), "--vocab-size", "300"]) == 0
    assert "300 pieces" in capsys.readouterr().out
    vocab = SentencePieceVocab(out.with_suffix(".model"))
    assert vocab.decode([vocab.encode(["el gato ß€ 猫"])[0]]) == ["el gato ß€ 猫"]  # byte fallback
    assert train_tokenizer(["--input", str(tmp_path / "missing.txt"), "--output", str(out)]) == 2
    assert "missing.txt does not exist" in capsys.readouterr().err

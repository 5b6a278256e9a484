"""ManifestData's bad inputs: each fails before training with one error naming manifest, line and field
(configuration errors at construction), and nothing is written half."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Callable

import pytest

from mmformer.data import ManifestData, ManifestError
from tests.data.manifests import ALL_FIELDS, sample_rows, write_manifest

FIELDS = {k: ALL_FIELDS[k] for k in ("image", "audio", "text", "label", "score", "emb")}
ROLES = {"input": "image", "label": "label", "source": "audio", "target": "text", "a": "emb", "b": "score"}


def data(tmp_path: Path, train: list[dict[str, Any]], val: list[dict[str, Any]] | None = None, suffix: str = ".jsonl",
         **kwargs: Any) -> ManifestData:
    args: dict[str, Any] = dict(fields=FIELDS, inputs=ROLES, data_dir=str(tmp_path / "data"), vocab_size=40,
                                train=write_manifest(tmp_path / f"train{suffix}", train),
                                val=write_manifest(tmp_path / f"val{suffix}", val) if val else None)
    return ManifestData(**{**args, **kwargs})


DELETE = object()


def edit(row: int, **changes: Any) -> Callable[[Path, list[dict]], None]:
    """A change to row ``row`` (0-based) of the rows: ``DELETE`` removes the field, a callable writes a file."""
    def apply(tmp_path: Path, rows: list[dict]) -> None:
        for key, value in changes.items():
            if value is DELETE:
                del rows[row][key]
            else:
                rows[row][key] = value(tmp_path) if callable(value) else value
    return apply


def _file(name: str, content: bytes) -> Callable[[Path], str]:
    def write(tmp_path: Path) -> str:
        (tmp_path / name).write_bytes(content)
        return name
    return write


# (case, change to the rows, the field, what the message says); the bad row is row 2 (0-based) = line 3
ROW_ERRORS = [
    ("missing field", edit(2, label=DELETE), "label", "the row has no 'label' \\(label\\); every row needs it"),
    ("null value", edit(2, score=None), "score", "the row has no 'score' \\(number\\)"),
    ("number not parseable", edit(2, score="high"), "score", "expected a finite number, got 'high'"),
    ("number not finite", edit(2, score="nan"), "score", "expected a finite number"),
    ("vector of wrong dim", edit(2, emb=[1.0, 2.0, 3.0]), "emb", "the vector has 3 values, but the field declares dim=4"),
    ("vector not numbers", edit(2, emb=["a", 1, 2, 3]), "emb", "expected a vector of 4 numbers"),
    ("missing image file", edit(2, image="nowhere.png"), "image", r"image file .*nowhere.png does not exist"),
    ("empty audio file", edit(2, audio=_file("empty.wav", b"")), "audio", r"audio file .*empty.wav is empty \(0 bytes\)"),
    ("unreadable image", edit(2, image=_file("bad.png", b"not a png")), "image", "is not a readable image"),
    ("unreadable audio", edit(2, audio=_file("bad.wav", b"RIFF garbage")), "audio", "is not readable audio"),
    ("empty text", edit(2, text="   "), "text", "empty text; write the text or drop the row"),
    ("text of the wrong type", edit(2, text=5), "text", "expected text \\(a string\\), got int 5"),
    ("label of the wrong type", edit(2, label=[1]), "label", "expected a class name"),
]


@pytest.mark.parametrize("case,change,field,message", ROW_ERRORS, ids=[c[0] for c in ROW_ERRORS])
def test_a_bad_row_names_manifest_line_and_field_and_trains_nothing(tmp_path: Path, case: str, change: Callable,
                                                                     field: str, message: str) -> None:
    rows = sample_rows(tmp_path, 5)
    change(tmp_path, rows)
    dm = data(tmp_path, rows)
    with pytest.raises(ManifestError, match=rf"train.jsonl:3, field '{field}': .*{message}"):
        dm.prepare_data()  # Lightning calls it before setup and before any step
    assert not (tmp_path / "data").exists(), "no vocabulary is trained from a manifest that fails its checks"


def test_a_bad_val_row_fails_before_the_vocabulary_is_trained(tmp_path: Path) -> None:
    val = sample_rows(tmp_path, 4, seed=1)
    val[3]["score"] = "n/a"
    dm = data(tmp_path, sample_rows(tmp_path, 5), val)
    with pytest.raises(ManifestError, match=r"val.jsonl:4, field 'score': expected a finite number, got 'n/a'"):
        dm.prepare_data()
    assert not (tmp_path / "data").exists()


def test_line_numbers_count_blank_lines_and_the_csv_header(tmp_path: Path) -> None:
    rows = sample_rows(tmp_path, 3)
    rows[1]["text"] = ""
    path = tmp_path / "train.jsonl"
    write_manifest(path, rows)
    path.write_text("\n" + path.read_text())  # a blank first line: the bad row is now on line 3
    dm = ManifestData(fields=FIELDS, inputs=ROLES, train=str(path), data_dir=str(tmp_path / "d"))
    with pytest.raises(ManifestError, match=r"train.jsonl:3, field 'text': empty text"):
        dm.setup("fit")
    dm = data(tmp_path, rows, suffix=".csv")  # the header is line 1, so row 1 (0-based) is line 3
    with pytest.raises(ManifestError, match=r"train.csv:3, field 'text': empty text"):
        dm.setup("fit")


def test_a_val_label_unseen_in_training_is_named_with_the_class_list(tmp_path: Path) -> None:
    val = sample_rows(tmp_path, 3, seed=1)
    val[1]["label"] = "purple"
    dm = data(tmp_path, sample_rows(tmp_path, 6), val)
    with pytest.raises(ManifestError, match=re.escape("val.jsonl:2, field 'label': label 'purple' of the val split is "
                                                      "not a class (['blue', 'green', 'red'])")):
        dm.setup("fit")


def test_a_label_outside_the_given_classes_is_refused_in_training_too(tmp_path: Path) -> None:
    fields = {**FIELDS, "label": {"type": "label", "classes": ["red", "green"]}}
    dm = data(tmp_path, sample_rows(tmp_path, 6), fields=fields)  # row 2 is blue
    with pytest.raises(ManifestError, match=r"train.jsonl:3, field 'label': label 'blue' of the train split is not"):
        dm.setup("fit")


def test_a_csv_manifest_lacking_a_mapped_column_fails_at_start_up(tmp_path: Path) -> None:
    rows = sample_rows(tmp_path, 4)
    train = write_manifest(tmp_path / "train.csv", rows, fields=["image", "audio", "text", "score", "emb"])
    dm = ManifestData(fields=FIELDS, inputs=ROLES, train=train, data_dir=str(tmp_path / "d"))
    with pytest.raises(ManifestError, match=r"train.csv:1: no column 'label' for the label field; the header has"):
        dm.prepare_data()


CONFIG_ERRORS = [
    ("role names an undeclared field", dict(inputs={"input": "image", "label": "keyword"}),
     "role 'label' maps to field 'keyword', which data.init_args.fields does not declare"),
    ("role cannot take the type", dict(inputs={"input": "image", "label": "text"}),
     "role 'label' cannot take field 'text' of type text; it takes \\['label'\\]"),
    ("target must be text", dict(inputs={"source": "text", "target": "image"}),
     "role 'target' cannot take field 'image' of type image"),
    ("unknown role", dict(inputs={"inptu": "image"}), "unknown role 'inptu'"),
    ("unknown type", dict(fields={**FIELDS, "x": {"type": "video"}}), "field 'x': type 'video' is not one of"),
    ("unknown option", dict(fields={**FIELDS, "x": {"type": "audio", "rate": 8000}}),
     "field 'x' \\(audio\\): unknown option\\(s\\) \\['rate'\\]; a audio field takes \\['sample_rate'\\]"),
    ("vector without dim", dict(fields={**FIELDS, "x": {"type": "vector"}}), "field 'x' \\(vector\\): set dim"),
    ("zero-shot over a non-label", dict(zeroshot={"text": ["{}"]}), "zeroshot: 'text' is not a declared label field"),
]


@pytest.mark.parametrize("case,change,message", CONFIG_ERRORS, ids=[c[0] for c in CONFIG_ERRORS])
def test_a_bad_configuration_fails_at_construction(tmp_path: Path, case: str, change: dict, message: str) -> None:
    with pytest.raises(ManifestError, match=message):
        ManifestData(**{"fields": FIELDS, "inputs": ROLES, "train": "never-read.jsonl", **change})


def test_a_manifest_of_unknown_format_or_without_rows_is_explained(tmp_path: Path) -> None:
    (tmp_path / "train.xlsx").write_text("x")
    with pytest.raises(ManifestError, match=r"unknown format '.xlsx'; use .jsonl"):
        ManifestData(fields=FIELDS, inputs=ROLES, train=str(tmp_path / "train.xlsx")).setup("fit")
    (tmp_path / "train.jsonl").write_text("\n")
    with pytest.raises(ManifestError, match="has no rows"):
        ManifestData(fields=FIELDS, inputs=ROLES, train=str(tmp_path / "train.jsonl")).setup("fit")
    (tmp_path / "train.jsonl").write_text('{"image": "a.png"}\n[1, 2]\n')
    with pytest.raises(ManifestError, match=r"train.jsonl:2: a list, not a JSON object"):
        ManifestData(fields=FIELDS, inputs=ROLES, train=str(tmp_path / "train.jsonl")).setup("fit")


def test_an_image_that_fails_only_when_decoded_names_its_row_in_the_batch(tmp_path: Path) -> None:
    rows = sample_rows(tmp_path, 4)
    png = tmp_path / rows[1]["image"]
    png.write_bytes(png.read_bytes()[:60])  # the header still parses; the pixels are cut off
    dm = data(tmp_path, rows, inputs={"input": "image", "label": "label"})
    dm.setup("fit")
    with pytest.raises(ManifestError, match=rf"train.jsonl:2, field 'image': .*{png.name}"):
        dm.datasets["train"][[0, 1]]


def test_no_training_data_or_a_builder_that_does_not_import_is_explained(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"set data.init_args.train \(a manifest\), data.init_args.embedded \(a builder\) or data.init_args.shards"):
        ManifestData(fields=FIELDS, inputs=ROLES)
    dm = ManifestData(fields=FIELDS, inputs=ROLES, embedded="corpora.nowhere.build", data_dir=str(tmp_path))
    with pytest.raises(ValueError, match="embedded: cannot import builder 'corpora.nowhere.build'"):
        dm.prepare_data()

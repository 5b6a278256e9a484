"""Multimodal manifests: rows of named, typed fields in JSONL (one object a line) or CSV/TSV (a header row).

A field's type says how its values are read:

=========  ==========================================  ===================================================
type       a value in the manifest                     read here as
=========  ==========================================  ===================================================
image      path of an image file                       the resolved path (header checked; decoded lazily)
audio      path of an audio file (WAV/FLAC/...)        the resolved path and its duration in seconds
text       a non-empty string                          the stripped string
label      a class name (string, or integer in JSONL)  the name as a string
number     a number (or a string that parses as one)   ``float``
vector     a list of numbers (JSONL), or a JSON list   ``dim`` floats
           or whitespace/comma-separated numbers (CSV)
=========  ==========================================  ===================================================

Relative paths resolve against the manifest's folder. Every value is checked when the manifest is
read, so a bad row fails before any training step; the error (:class:`ManifestError`) names the
manifest, the line and the field, and says how to fix it. Image and audio files are only probed
here (header, size); their pixels and samples are decoded by :func:`decode_image`/:func:`decode_audio`
when a batch needs them.
"""

from __future__ import annotations

import io
import json
import math
import sys
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import torch
from torch import Tensor

from mmformer.data.readers.blob import Blob, open_source
from mmformer.data.readers.text import encodable, is_file, json_objects, jsonl_lines, table_rows

FIELD_TYPES = ("image", "audio", "text", "label", "number", "vector")
JSONL_SUFFIXES = (".jsonl", ".json", ".ndjson")
SEPARATORS = {".csv": ",", ".tsv": "\t", ".tab": "\t"}
# decoding options each type takes (with their defaults); anything else is a configuration error
FIELD_OPTIONS: dict[str, dict[str, Any]] = {
    "image": {"size": 64, "channels": 3, "mean": None, "std": None},
    "audio": {"sample_rate": 16000},
    "text": {"max_len": 128},
    "label": {"classes": None},
    "number": {},
    "vector": {"dim": None},
}


class ManifestError(ValueError):
    """A manifest row or the field configuration is wrong; the message names manifest, line and field."""


@dataclass(frozen=True)
class FieldSpec:
    """How one manifest field is read.

    Attributes:
        name: the field's key (JSONL) or column (CSV/TSV).
        type: one of :data:`FIELD_TYPES`.
        options: the type's decoding options (see :data:`FIELD_OPTIONS`), defaults filled in.
    """

    name: str
    type: str
    options: dict[str, Any] = field(default_factory=dict)

    def __getitem__(self, key: str) -> Any:
        return self.options[key]


def parse_fields(fields: dict[str, dict[str, Any]]) -> dict[str, FieldSpec]:
    """The ``fields:`` mapping of a config → :class:`FieldSpec` per field, options checked and defaulted.

    Raises:
        ManifestError: an unknown type or option, or an option of the wrong form.
    """
    if not fields:
        raise ManifestError("data.init_args.fields is empty: declare each manifest field used, e.g. "
                            "{audio_filepath: {type: audio}, keyword: {type: label}}")
    specs = {}
    for name, cfg in fields.items():
        cfg = dict(cfg or {})
        kind = cfg.pop("type", None)
        if kind not in FIELD_TYPES:
            raise ManifestError(f"field {name!r}: type {kind!r} is not one of {list(FIELD_TYPES)}")
        unknown = sorted(set(cfg) - set(FIELD_OPTIONS[kind]))
        if unknown:
            raise ManifestError(f"field {name!r} ({kind}): unknown option(s) {unknown}; a {kind} field takes "
                                f"{sorted(FIELD_OPTIONS[kind]) or 'no options'}")
        options = {**FIELD_OPTIONS[kind], **cfg}
        if kind == "vector" and not (isinstance(options["dim"], int) and options["dim"] > 0):
            raise ManifestError(f"field {name!r} (vector): set dim, the vector's length (a positive integer)")
        if kind == "label" and options["classes"] is not None:
            classes = [str(c) for c in options["classes"]]
            if not classes or len(set(classes)) != len(classes):
                raise ManifestError(f"field {name!r} (label): classes must be a non-empty list of distinct names")
            options["classes"] = classes
        if kind == "image":
            for key in ("mean", "std"):
                if options[key] is not None and len(options[key]) != options["channels"]:
                    raise ManifestError(f"field {name!r} (image): {key} needs {options['channels']} values "
                                        f"(one per channel)")
        specs[name] = FieldSpec(name, kind, options)
    return specs


@dataclass
class ManifestTable:
    """The raw rows of one manifest.

    Attributes:
        path: the manifest file.
        rows: one dict per sample (field → raw value).
        lines: ``(N,)`` 1-based line number of each row (CSV/TSV: the header is line 1).
        columns: the header (CSV/TSV), or None (JSONL: every row has its own keys).
    """

    path: Path
    rows: list[dict[str, Any]]
    lines: list[int]
    columns: list[str] | None = None

    def where(self, i: int, name: str) -> str:
        """``"<manifest>:<line>, field '<name>'"`` for error messages."""
        return f"{self.path}:{self.lines[i]}, field {name!r}"

    def __len__(self) -> int:
        return len(self.rows)


def read_table(path: str | Path) -> ManifestTable:
    """Reads a manifest's rows: JSONL by suffix ``.jsonl``/``.json``/``.ndjson``, else CSV (``.csv``) or
    TSV (``.tsv``/``.tab``) with a header row. Blank JSONL lines are skipped. ``-`` reads JSONL from stdin
    (``mmformer predict ... --data.init_args.predict=-``); file paths in its rows resolve against the
    current folder, and rows are named ``<stdin>:<line>``.

    Raises:
        FileNotFoundError: the manifest does not exist.
        ManifestError: an unknown suffix, a line that is not a JSON object, or no rows at all.
    """
    stdin = str(path) == "-"
    path = Path("<stdin>") if stdin else Path(path)
    if not stdin and not is_file(path):
        raise FileNotFoundError(f"manifest {path} does not exist")
    suffix = ".jsonl" if stdin else path.suffix.lower()
    rows, lines, columns = [], [], None
    if suffix in JSONL_SUFFIXES:
        numbered = enumerate(sys.stdin.read().split("\n"), start=1) if stdin else jsonl_lines(path, ManifestError)
        for n, obj in json_objects(numbered, path, ManifestError, "write one object per line"):
            rows.append(obj)
            lines.append(n)
    elif suffix in SEPARATORS:
        header, found = table_rows(path, SEPARATORS[suffix], ManifestError)
        columns = header
        for n, row in found:
            rows.append(row)
            lines.append(n)  # the line the row starts on (quoted cells may span lines)
    else:
        raise ManifestError(f"manifest {path}: unknown format {suffix!r}; use .jsonl (one JSON object a line), "
                            f".csv or .tsv (a header row)")
    if not rows:
        raise ManifestError(f"manifest {path} has no rows")
    return ManifestTable(path, rows, lines, columns)


@dataclass
class Column:
    """One field's values over a manifest, as read (see the module table).

    Attributes:
        spec: the field.
        values: paths (image/audio), strings (text/label), or a tensor ``(N,)``/``(N, D)`` float (number/vector).
        durations: ``(N,)`` seconds of each audio clip (audio fields only).
    """

    spec: FieldSpec
    values: list[str] | list[str | Blob] | Tensor
    durations: Tensor | None = None


def read_column(table: ManifestTable, spec: FieldSpec) -> Column:
    """Reads and checks one field in every row of ``table``.

    Raises:
        ManifestError: a row lacks the field or holds a value of the wrong form (naming manifest, line, field).
    """
    if table.columns is not None and spec.name not in table.columns:
        raise ManifestError(f"{table.path}:1: no column {spec.name!r} for the {spec.type} field; the header has "
                            f"{table.columns}; rename the column or the field in data.init_args.fields/inputs")
    raw = []
    for i, row in enumerate(table.rows):
        value = row.get(spec.name)
        if value is None:  # a JSONL key that is absent or null, or a CSV row with too few cells
            raise ManifestError(f"{table.where(i, spec.name)}: the row has no {spec.name!r} ({spec.type}); every "
                                f"row needs it (it has {sorted(k for k in row if k is not None)})")
        raw.append(value)
    reader = {"image": _images, "audio": _audio, "text": _texts, "label": _labels, "number": _numbers,
              "vector": _vectors}[spec.type]
    return reader(table, spec, raw)


def _file(table: ManifestTable, i: int, spec: FieldSpec, value: Any) -> Path | Blob:
    """A row's file path resolved against the manifest's folder; missing or empty files raise. A :class:`Blob`
    (a file inside shards) is the file itself."""
    if isinstance(value, Blob):
        return value
    where = table.where(i, spec.name)
    if not isinstance(value, str) or not value.strip():
        raise ManifestError(f"{where}: expected the path of an {spec.type} file, got {value!r}")
    path = Path(value.strip())
    path = path if path.is_absolute() else table.path.parent / path
    if not is_file(path):
        raise ManifestError(f"{where}: {spec.type} file {path} does not exist (relative paths resolve against "
                            f"the manifest's folder)")
    if path.stat().st_size == 0:
        raise ManifestError(f"{where}: {spec.type} file {path} is empty (0 bytes); replace it or drop the row")
    return path


def _images(table: ManifestTable, spec: FieldSpec, raw: list[Any]) -> Column:
    from PIL import Image

    from mmformer.data.readers.image_files import pil_errors

    paths = []
    for i, value in enumerate(raw):
        path = _file(table, i, spec, value)
        try:  # the header only: cheap, and a non-image fails here rather than mid-epoch
            with pil_errors(str(path)), Image.open(open_source(path, "image")[0]) as img:
                img.size  # noqa: B018
        except ValueError as err:
            raise ManifestError(f"{table.where(i, spec.name)}: {err}") from err
        paths.append(str(path) if isinstance(path, Path) else path)  # a Path has read_bytes: it is a Blob too
    return Column(spec, paths)


def probe_duration(path: Path | Blob) -> float:
    """Seconds of audio in ``path`` from its header: a WAV's own (walked by :func:`~mmformer.data.readers.wav.check_wav`,
    so a truncated or impossible WAV raises here), else soundfile's, else a decode.

    Raises:
        AudioFileError: a broken WAV header, or a file no decoder reads.
    """
    from mmformer.data.readers.audio import load_audio
    from mmformer.data.readers.wav import check_wav

    source = open_source(path, "audio")[0]
    with open(source, "rb") if isinstance(source, Path) else nullcontext(source) as f:
        header = check_wav(f, str(path)) if f.read(4) in (b"RIFF", b"RIFX", b"RF64") else None
    if header is not None:
        return header.seconds
    try:
        import soundfile

        info = soundfile.info(source if isinstance(source, io.BytesIO) else str(source))
        return info.frames / info.samplerate
    except Exception:  # no soundfile, or a format it lacks: decode it
        return load_audio(path, 16000).numel() / 16000


def _audio(table: ManifestTable, spec: FieldSpec, raw: list[Any]) -> Column:
    paths, durations = [], []
    for i, value in enumerate(raw):
        path = _file(table, i, spec, value)
        try:
            seconds = probe_duration(path)
        except ValueError as err:  # AudioFileError: names the file and what is wrong with it
            raise ManifestError(f"{table.where(i, spec.name)}: {err}") from err
        except Exception as err:
            raise ManifestError(f"{table.where(i, spec.name)}: {path} is not readable audio ({err}); convert it to "
                                f"WAV/FLAC or drop the row") from err
        if seconds <= 0:
            raise ManifestError(f"{table.where(i, spec.name)}: audio file {path} holds no samples; replace it or "
                                f"drop the row")
        paths.append(str(path) if isinstance(path, Path) else path)  # a Path has read_bytes: it is a Blob too
        durations.append(seconds)
    return Column(spec, paths, torch.tensor(durations, dtype=torch.float64))


def _texts(table: ManifestTable, spec: FieldSpec, raw: list[Any]) -> Column:
    texts = []
    for i, value in enumerate(raw):
        if not isinstance(value, str):
            raise ManifestError(f"{table.where(i, spec.name)}: expected text (a string), got "
                                f"{type(value).__name__} {value!r}")
        if not value.strip():
            raise ManifestError(f"{table.where(i, spec.name)}: empty text; write the text or drop the row")
        if not encodable(value):
            raise ManifestError(f"{table.where(i, spec.name)}: the text holds an unpaired surrogate escape (such as "
                                f"\\ud800), which is no character; fix the row's text")
        texts.append(value.strip())
    return Column(spec, texts)


def _labels(table: ManifestTable, spec: FieldSpec, raw: list[Any]) -> Column:
    names = []
    for i, value in enumerate(raw):
        if isinstance(value, bool) or not isinstance(value, (str, int)) or not str(value).strip():
            raise ManifestError(f"{table.where(i, spec.name)}: expected a class name (a non-empty string or an "
                                f"integer), got {value!r}")
        if not encodable(str(value)):
            raise ManifestError(f"{table.where(i, spec.name)}: the class name holds an unpaired surrogate escape "
                                f"(such as \\ud800), which is no character; fix the row")
        names.append(str(value).strip())
    return Column(spec, names)


def _number(value: Any) -> float:
    if isinstance(value, bool):
        raise ValueError("a boolean")
    try:
        x = float(value)  # int/float, or a string such as "0.5" (CSV cells are strings)
    except OverflowError:  # an integer beyond float's range
        raise ValueError("too large") from None
    if not math.isfinite(x):
        raise ValueError("not finite")
    return x


def _numbers(table: ManifestTable, spec: FieldSpec, raw: list[Any]) -> Column:
    out = []
    for i, value in enumerate(raw):
        try:
            out.append(_number(value))
        except (TypeError, ValueError) as err:
            raise ManifestError(f"{table.where(i, spec.name)}: expected a finite number, got {value!r} "
                                f"({err})") from err
    return Column(spec, torch.tensor(out, dtype=torch.float32))


def _vector(value: Any) -> list[float]:
    if isinstance(value, str):  # a CSV cell: "[1, 2, 3]" or "1 2 3" or "1,2,3"
        text = value.strip()
        value = json.loads(text) if text.startswith("[") else text.replace(",", " ").split()
    if not isinstance(value, list):
        raise ValueError(f"a {type(value).__name__}, not a list")
    return [_number(v) for v in value]


def _vectors(table: ManifestTable, spec: FieldSpec, raw: list[Any]) -> Column:
    out = []
    for i, value in enumerate(raw):
        try:
            vec = _vector(value)
        except (TypeError, ValueError) as err:
            raise ManifestError(f"{table.where(i, spec.name)}: expected a vector of {spec['dim']} numbers, got "
                                f"{str(value)[:60]!r} ({err})") from err
        if len(vec) != spec["dim"]:
            raise ManifestError(f"{table.where(i, spec.name)}: the vector has {len(vec)} values, but the field "
                                f"declares dim={spec['dim']}")
        out.append(vec)
    return Column(spec, torch.tensor(out, dtype=torch.float32).reshape(len(out), spec["dim"]))


def label_classes(names: Sequence[str]) -> list[str]:
    """The class list of a label field read from training values: unique names, sorted — numerically
    when every name is an integer (so ``2`` comes before ``10``)."""
    unique = set(names)
    if all(n.lstrip("-").isdigit() for n in unique):
        return sorted(unique, key=int)
    return sorted(unique)


def label_ids(table: ManifestTable, column: Column, classes: Sequence[str], split: str) -> Tensor:
    """A label column's names → ``(N,)`` long ids into ``classes``.

    Raises:
        ManifestError: a name outside ``classes`` (naming manifest, line, field and the class list).
    """
    index = {c: k for k, c in enumerate(classes)}
    ids = []
    for i, name in enumerate(column.values):
        if name not in index:
            shown = list(classes)[:20] + (["..."] if len(classes) > 20 else [])
            raise ManifestError(f"{table.where(i, column.spec.name)}: label {name!r} of the {split} split is not a "
                                f"class ({shown}); classes are the training split's labels unless the field "
                                f"lists `classes`: fix the row or add the class")
        ids.append(index[name])
    return torch.tensor(ids, dtype=torch.long)


def decode_image(path: str, spec: FieldSpec) -> Tensor:
    """One image file → ``(C, size, size)`` uint8 (see :func:`~mmformer.data.readers.image_files.load_image`)."""
    from mmformer.data.readers.image_files import load_image

    return load_image(path, spec["channels"], spec["size"])


def decode_audio(path: str, spec: FieldSpec) -> Tensor:
    """One audio file → mono ``(L,)`` float at the field's ``sample_rate`` (any other rate is resampled)."""
    from mmformer.data.readers.audio import load_audio

    return load_audio(path, spec["sample_rate"])

"""What is fuzzed for each user format: valid base files, their corruptions (byte-level, and field-level for
the text formats), the reader call and the check that a loaded result is not garbage (see ``fuzzing.py``)."""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from tests.data.readers.fuzzing import Case, awkward_strings, corrupted, json_values

Cases = Callable[[Path], st.SearchStrategy[Case]]


def _text_ok(value: Any) -> str | None:
    if not isinstance(value, str) or not value.strip():
        return f"text {value!r} is not a non-empty string"
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return f"text {value!r} is not encodable as UTF-8"
    return None


def _first(problems: Any) -> str | None:
    return next((p for p in problems if p), None)


def _media(root: Path) -> tuple[str, str]:
    """A 8x8 RGB PNG and a 0.05 s 16 kHz WAV under ``root/media``."""
    from PIL import Image

    from mmformer.data.readers.audio import write_wav

    Image.init()  # every plugin: what identifies a corrupt file must not depend on what was opened before
    (root / "media").mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (8, 8), (200, 30, 40)).save(root / "media" / "a.png")
    write_wav(root / "media" / "a.wav", 0.5 * np.sin(np.arange(800) / 5.0), 16000)
    return "media/a.png", "media/a.wav"


def _case(path: Path, data: bytes, read: Callable[[Path], Any], check: Callable[[Any], str | None], note: str,
          rows: bool = True, names: tuple[str, ...] = ()) -> Case:
    def call() -> Any:
        path.write_bytes(data)
        return read(path)

    return Case(call, names or (str(path),), rows, check, note)


def _cell_edit(rows: list[list[str]]) -> st.SearchStrategy[tuple[list[list[str]], str]]:
    """A row (header included) with a cell replaced, dropped or added."""
    @st.composite
    def edit(draw: st.DrawFn) -> tuple[list[list[str]], str]:
        out = [list(r) for r in rows]
        r = draw(st.integers(0, len(out) - 1))
        c = draw(st.integers(0, len(out[r]) - 1))
        op = draw(st.sampled_from(["set", "drop", "add"]))
        value = draw(awkward_strings() | st.text(max_size=12))
        if op == "set":
            out[r][c] = value
        elif op == "drop":
            del out[r][c]
        else:
            out[r].insert(c, value)
        return out, f"cell {op} r{r}c{c}={value[:20]!r}"
    return edit()


def _table_bytes(rows: list[list[str]], sep: str, quoted: bool) -> bytes:
    if quoted:
        buf = io.StringIO()
        csv.writer(buf, delimiter=sep, lineterminator="\n").writerows(rows)
        return buf.getvalue().encode("utf-8", "surrogatepass")
    return "".join(sep.join(r) + "\n" for r in rows).encode("utf-8", "surrogatepass")


def _json_edit(objs: list[dict[str, Any]]) -> st.SearchStrategy[tuple[bytes, str]]:
    """JSONL rows with one value replaced by any JSON value, a key removed, or a row replaced by a non-object."""
    @st.composite
    def edit(draw: st.DrawFn) -> tuple[bytes, str]:
        out = [dict(o) for o in objs]
        r = draw(st.integers(0, len(out) - 1))
        key = draw(st.sampled_from(sorted(out[r])))
        op = draw(st.sampled_from(["set", "set", "set", "drop", "row"]))
        value = draw(json_values())
        lines = []
        if op == "set":
            out[r][key] = value
        elif op == "drop":
            del out[r][key]
        for i, o in enumerate(out):
            lines.append(json.dumps(value if op == "row" and i == r else o, ensure_ascii=draw(st.booleans())))
        return "\n".join(lines).encode("utf-8", "surrogatepass") + b"\n", f"json {op} r{r}.{key}={str(value)[:30]!r}"
    return edit()


# --- multimodal manifests (JSONL/CSV/TSV, every field type) -----------------------------------------------------------

def manifest_cases(root: Path) -> st.SearchStrategy[Case]:
    from mmformer.data.readers.manifest import parse_fields, read_column, read_table

    image, audio = _media(root)
    specs = parse_fields({"image": {"type": "image", "size": 8}, "audio": {"type": "audio"}, "text": {"type": "text"},
                          "label": {"type": "label"}, "score": {"type": "number"}, "emb": {"type": "vector", "dim": 3}})
    objs = [{"image": image, "audio": audio, "text": f"row {i} says hi", "label": ["cat", "dog"][i % 2],
             "score": 0.5 * i, "emb": [i, 1.5, -2.0]} for i in range(3)]
    header = list(objs[0])
    cells = [header] + [[o["image"], o["audio"], o["text"], o["label"], str(o["score"]), " ".join(map(str, o["emb"]))]
                        for o in objs]
    jsonl = "".join(json.dumps(o) + "\n" for o in objs).encode()
    bases = {".jsonl": [jsonl], ".csv": [_table_bytes(cells, ",", True)], ".tsv": [_table_bytes(cells, "\t", False)]}

    def read(path: Path) -> list[Any]:
        table = read_table(path)
        return [read_column(table, spec) for spec in specs.values()]

    def check(columns: list[Any]) -> str | None:
        problems = []
        for col in columns:
            kind, values = col.spec.type, col.values
            if kind in ("image", "audio"):
                problems += [None if isinstance(v, str) and Path(v).is_file() else f"{v!r} is no file" for v in values]
            if kind == "audio":
                d = col.durations
                problems.append(None if bool(torch.isfinite(d).all() and (d > 0).all()) else f"durations {d}")
            if kind in ("text", "label"):
                problems += [_text_ok(v) for v in values]
            if kind in ("number", "vector"):
                ok = values.dtype == torch.float32 and bool(torch.isfinite(values).all())
                problems.append(None if ok else f"{kind} values {values}")
        return _first(problems)

    def of(suffix: str) -> st.SearchStrategy[Case]:
        path = root / f"manifest{suffix}"
        byte_level = corrupted(bases[suffix]).map(lambda d: _case(path, d[0], read, check, d[1]))
        if suffix == ".jsonl":
            fields = _json_edit(objs)
        else:
            sep = "," if suffix == ".csv" else "\t"
            fields = st.tuples(_cell_edit(cells), st.booleans()).map(
                lambda e: (_table_bytes(e[0][0], sep, e[1]), e[0][1]))
        return byte_level | fields.map(lambda d: _case(path, d[0], read, check, d[1]))

    def media(kind: str, name: str) -> st.SearchStrategy[Case]:
        """A valid manifest whose second row lists a corrupted copy of the image or the clip (only probed here:
        its header must pass or fail with the row named)."""
        path, file = root / "media_manifest.jsonl", root / "media" / name
        rows = [dict(objs[0]), {**objs[1], kind: f"media/{name}"}]
        listing = "".join(json.dumps(r) + "\n" for r in rows).encode()

        def case(d: tuple[bytes, str]) -> Case:
            def call() -> Any:
                file.write_bytes(d[0])
                return read(_written(path, listing))
            return Case(call, (str(path),), True, check, f"{kind} file {d[1]}")

        return corrupted([(root / (image if kind == "image" else audio)).read_bytes()]).map(case)

    return st.one_of([of(suffix) for suffix in (".jsonl", ".csv", ".tsv")] + [media("image", "c.png"),
                                                                              media("audio", "c.wav")])


def _written(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


# --- NeMo manifests -------------------------------------------------------------------------------------------------

def nemo_cases(root: Path) -> st.SearchStrategy[Case]:
    from mmformer.data.readers.audio import read_manifest

    _, audio = _media(root)
    wav = (root / audio).read_bytes()
    objs = [{"audio_filepath": audio, "duration": 0.05, "text": "hello world"}, {"audio_filepath": audio,
            "text": "no duration here"}, {"audio_filepath": str(root / audio), "duration": 0.05, "text": "absolute"}]
    path = root / "nemo.jsonl"
    jsonl = "".join(json.dumps(o) + "\n" for o in objs).encode()

    def check(entries: list[Any]) -> str | None:
        return _first([_text_ok(e.text) if e.text else None for e in entries]
                      + [None if math.isfinite(e.duration) and e.duration >= 0 else f"duration {e.duration!r}"
                         for e in entries]
                      + [None if Path(e.audio_filepath).is_file() else f"{e.audio_filepath} is no file" for e in entries])

    def with_wav(data: bytes, clip: bytes, note: str) -> Case:
        """The manifest (as ``data``) listing a clip whose bytes are ``clip`` (a corrupted WAV, or the valid one)."""
        clip_path = root / "media" / "c.wav"

        def call() -> Any:
            clip_path.write_bytes(clip)
            path.write_bytes(data)
            return read_manifest(path)

        return Case(call, (str(path),), True, check, note)

    listing = (json.dumps({"audio_filepath": "media/c.wav", "duration": 0.05, "text": "a clip"}) + "\n").encode()
    return st.one_of(
        corrupted([jsonl]).map(lambda d: with_wav(d[0], wav, d[1])),
        _json_edit(objs).map(lambda d: with_wav(d[0], wav, d[1])),
        corrupted([wav]).map(lambda d: with_wav(listing, d[0], "clip " + d[1])),
    )


# --- parallel text (TSV pairs, and JSONL pairs) ------------------------------------------------------------------------

def pairs_cases(root: Path) -> st.SearchStrategy[Case]:
    from mmformer.data.readers.text_pairs import read_pairs

    cells = [["src", "tgt"], ["a cat", "un chat"], ["two dogs", "deux chiens"], ["yes", "oui"]]
    objs = [{"src": a, "tgt": b, "id": i} for i, (a, b) in enumerate(cells[1:])]

    def check(pairs: Any) -> str | None:
        if not (len(pairs.sources) == len(pairs.targets) == len(pairs.rows)):
            return "unequal lengths"
        return _first([_text_ok(s) for s in pairs.sources + pairs.targets])

    tsv, jsonl = root / "pairs.tsv", root / "pairs.jsonl"
    read = lambda p: read_pairs(str(p))  # noqa: E731
    tsv_cases = st.one_of(corrupted([_table_bytes(cells, "\t", False)]),
                          _cell_edit(cells).map(lambda e: (_table_bytes(e[0], "\t", False), e[1])))
    jsonl_cases = st.one_of(corrupted(["".join(json.dumps(o) + "\n" for o in objs).encode()]), _json_edit(objs))
    return st.one_of(tsv_cases.map(lambda d: _case(tsv, d[0], read, check, d[1])),
                     jsonl_cases.map(lambda d: _case(jsonl, d[0], read, check, d[1])))


# --- D4RL .npz ------------------------------------------------------------------------------------------------------

def _npz(arrays: dict[str, np.ndarray]) -> bytes:
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return buf.getvalue()


def d4rl_cases(root: Path) -> st.SearchStrategy[Case]:
    from mmformer.data.readers.d4rl import episodes_from_arrays, read_d4rl

    rng = np.random.default_rng(0)
    t = 6
    base = {"observations": rng.normal(size=(t, 3)).astype(np.float32), "actions": rng.integers(0, 4, t),
            "rewards": rng.normal(size=t).astype(np.float32), "terminals": np.array([0, 0, 1, 0, 0, 0], bool),
            "timeouts": np.zeros(t, bool), "ref_min_score": np.array(0.0), "ref_max_score": np.array(10.0)}
    continuous = {**base, "actions": rng.uniform(-1, 1, (t, 2)).astype(np.float32)}
    path = root / "data.npz"

    def check(ep: Any) -> str | None:
        n = ep.observations.shape[0]
        problems = [None if ep.observations.dtype == torch.float32 and ep.observations.dim() == 2 else "observations"]
        problems.append(None if ep.actions.dtype in (torch.int64, torch.float32) and ep.actions.shape[0] == n
                        else f"actions {ep.actions.dtype} {tuple(ep.actions.shape)}")
        if ep.actions.dtype == torch.int64:
            problems.append(None if bool((ep.actions >= 0).all()) else "negative action ids")
        for name in ("observations", "actions", "rewards", "returns_to_go"):
            problems.append(None if bool(torch.isfinite(getattr(ep, name).float()).all()) else f"{name} not finite")
        for ref in (ep.ref_min_score, ep.ref_max_score):
            problems.append(None if ref is None or math.isfinite(ref) else f"reference score {ref}")
        return _first(problems)

    read = lambda p: episodes_from_arrays(read_d4rl(p), str(p))  # noqa: E731
    dtypes = st.sampled_from(["f4", "f8", "f2", "i8", "i4", "u1", "u8", "b1", "c8", "U3", "S2", "M8[s]"])
    random_array = hnp.arrays(dtypes, hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=7))

    @st.composite
    def field_edit(draw: st.DrawFn) -> tuple[bytes, str]:
        arrays = dict(draw(st.sampled_from([base, continuous])))
        key = draw(st.sampled_from(sorted(arrays)))
        op = draw(st.sampled_from(["replace", "drop", "poke"]))
        if op == "replace":
            arrays[key] = draw(random_array)
        elif op == "drop":
            del arrays[key]
        else:  # one awkward value in an otherwise valid array
            a = np.array(arrays[key], dtype=np.float64 if arrays[key].dtype.kind == "f" else np.int64)
            if a.size:
                pool = [np.nan, np.inf, -np.inf, 1e300, -1.0] if a.dtype.kind == "f" else [-1, 2 ** 40, 7]
                a.reshape(-1)[draw(st.integers(0, a.size - 1))] = draw(st.sampled_from(pool))
            arrays[key] = a
        return _npz(arrays), f"array {op} {key}"

    return st.one_of(corrupted([_npz(base), _npz(continuous)]), field_edit()).map(
        lambda d: _case(path, d[0], read, check, d[1], rows=False))


# --- image files ----------------------------------------------------------------------------------------------------

def image_cases(root: Path) -> st.SearchStrategy[Case]:
    from PIL import Image

    from mmformer.data.readers.image_files import load_image

    Image.init()  # every plugin: what identifies a corrupt file must not depend on what was opened before
    rng = np.random.default_rng(0)
    rgb = Image.fromarray(rng.integers(0, 256, (6, 8, 3), dtype=np.uint8), "RGB")
    bases = []
    for mode, fmt in [("RGB", "PNG"), ("L", "PNG"), ("P", "PNG"), ("RGBA", "PNG"), ("LA", "PNG"), ("I;16", "PNG"),
                      ("RGB", "JPEG"), ("L", "JPEG"), ("RGB", "BMP"), ("P", "GIF"), ("RGB", "TIFF"), ("RGB", "WEBP"),
                      ("RGB", "PPM")]:
        buf = io.BytesIO()
        (rgb.convert(mode) if mode != "RGBA" else rgb.convert("RGBA")).save(buf, fmt)
        bases.append((fmt.lower(), buf.getvalue()))

    def of(fmt: str, data: bytes) -> st.SearchStrategy[Case]:
        path = root / f"image.{fmt}"

        def cases(d: tuple[bytes, str], channels: int) -> Case:
            def check(x: Any) -> str | None:
                ok = isinstance(x, torch.Tensor) and x.dtype == torch.uint8 and tuple(x.shape) == (channels, 8, 8)
                return None if ok else f"{type(x).__name__} {getattr(x, 'dtype', '')} {tuple(getattr(x, 'shape', ()))}"
            return _case(path, d[0], lambda p: load_image(p, channels, 8), check, f"{fmt} {d[1]}", rows=False)

        return st.tuples(corrupted([data]), st.sampled_from([1, 3])).map(lambda a: cases(*a))

    return st.one_of([of(fmt, data) for fmt, data in bases])


# --- audio files ----------------------------------------------------------------------------------------------------

def audio_cases(root: Path) -> st.SearchStrategy[Case]:
    import soundfile

    from mmformer.data.readers.audio import load_audio

    wave = 0.5 * np.sin(np.arange(400) / 3.0)
    bases = []
    for fmt, subtype, rate, channels in [("WAV", "PCM_16", 16000, 1), ("WAV", "PCM_16", 8000, 2),
                                         ("WAV", "PCM_U8", 16000, 1), ("WAV", "PCM_24", 16000, 1),
                                         ("WAV", "PCM_32", 22050, 1), ("WAV", "FLOAT", 16000, 1),
                                         ("WAV", "DOUBLE", 16000, 2), ("FLAC", "PCM_16", 16000, 1),
                                         ("OGG", "VORBIS", 16000, 1)]:
        buf = io.BytesIO()
        data = np.stack([wave] * channels, axis=1) if channels > 1 else wave
        soundfile.write(buf, data, rate, subtype=subtype, format=fmt)
        bases.append((fmt.lower(), buf.getvalue()))

    def check(x: Any) -> str | None:
        if not (isinstance(x, torch.Tensor) and x.dtype == torch.float32 and x.dim() == 1):
            return f"{type(x).__name__} {getattr(x, 'dtype', '')} {tuple(getattr(x, 'shape', ()))}"
        if x.numel() == 0:  # a file that declares no samples: (0,), documented (load_audio); manifests refuse it
            return None
        if not bool(torch.isfinite(x).all()):
            return "non-finite samples"
        return None if float(x.abs().max()) <= 100 else f"samples up to {float(x.abs().max()):.3g} (not audio)"

    def of(fmt: str, data: bytes) -> st.SearchStrategy[Case]:
        path = root / f"clip.{fmt}"
        return corrupted([data]).map(lambda d: _case(path, d[0], lambda p: load_audio(p, 16000), check,
                                                       f"{fmt} {d[1]}", rows=False))

    return st.one_of([of(fmt, data) for fmt, data in bases])


# --- IDX (MNIST) files -----------------------------------------------------------------------------------------------

def idx_cases(root: Path) -> st.SearchStrategy[Case]:
    import gzip

    from mmformer.data.readers.idx import read_idx

    images = bytes([0, 0, 8, 3, 0, 0, 0, 3, 0, 0, 0, 4, 0, 0, 0, 4]) + bytes(range(48))
    labels = bytes([0, 0, 8, 1, 0, 0, 0, 3, 7, 1, 4])

    def check(x: Any) -> str | None:
        if not isinstance(x, torch.Tensor):
            return type(x).__name__
        return None if not x.is_floating_point() or bool(torch.isfinite(x).all()) else "non-finite values"

    def of(name: str, data: bytes) -> st.SearchStrategy[Case]:
        path = root / name
        return corrupted([data]).map(lambda d: _case(path, d[0], read_idx, check, f"{name} {d[1]}", rows=False))

    return st.one_of([of(name, data) for name, data in [
        ("images-idx3-ubyte", images), ("labels-idx1-ubyte", labels),
        ("images-idx3-ubyte.gz", gzip.compress(images, mtime=0)), ("labels-idx1-ubyte.gz", gzip.compress(labels, mtime=0))]])


FORMATS: dict[str, Cases] = {
    "manifest (JSONL/CSV/TSV)": manifest_cases, "NeMo manifest": nemo_cases,
    "text pairs (TSV/JSONL)": pairs_cases, "D4RL npz": d4rl_cases, "image files": image_cases,
    "audio files": audio_cases, "IDX files": idx_cases,
}

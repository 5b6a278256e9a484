"""Corruptions the fuzzer found, one test each: every one is now mmformer's own error naming the file (and
line), where it was a foreign exception (UnicodeDecodeError, OverflowError, TypeError, PIL's ValueError,
numpy's pickle refusal) or an allocation sized by a corrupt header."""

from __future__ import annotations

import io
import json
import struct
import zipfile
import zlib
from pathlib import Path

import numpy as np
import pytest

from mmformer.cli.errors import _raised_by_mmformer
from mmformer.data.readers.audio import read_manifest
from mmformer.data.readers.d4rl import episodes_from_arrays, read_d4rl
from mmformer.data.readers.idx import read_idx
from mmformer.data.readers.image_files import load_image
from mmformer.data.readers.manifest import ManifestError, parse_fields, read_column, read_table
from mmformer.data.readers.text_pairs import read_pairs


def _ours(info: pytest.ExceptionInfo) -> bool:
    """Raised by a ``raise`` in mmformer: what ``mmformer`` prints as one line and exits 1 on."""
    return _raised_by_mmformer(info.value)


@pytest.mark.parametrize("name", ["m.jsonl", "m.csv", "m.tsv"])
def test_invalid_utf8_in_a_manifest_names_the_line(tmp_path: Path, name: str) -> None:
    sep = "\t" if name.endswith(".tsv") else ","
    rows = ['{"text": "fine"}', '{"text": "caf\xe9"}'] if name.endswith(".jsonl") else ["text", "fine", "caf\xe9"]
    (tmp_path / name).write_bytes("\n".join(rows).replace(",", sep).encode("latin-1") + b"\n")
    line = 2 if name.endswith(".jsonl") else 3
    with pytest.raises(ManifestError, match=rf"{name}:{line}: not valid UTF-8 .*re-encode the file as UTF-8") as info:
        read_table(tmp_path / name)
    assert _ours(info)


def test_a_number_too_large_for_a_float_names_line_and_field(tmp_path: Path) -> None:
    (tmp_path / "m.jsonl").write_text('{"score": 1}\n{"score": 1' + "0" * 400 + "}\n")
    spec = parse_fields({"score": {"type": "number"}})["score"]
    with pytest.raises(ManifestError, match=r"m\.jsonl:2, field 'score': expected a finite number"):
        read_column(read_table(tmp_path / "m.jsonl"), spec)


def test_a_lone_surrogate_in_manifest_text_names_line_and_field(tmp_path: Path) -> None:
    (tmp_path / "m.jsonl").write_text('{"text": "ok"}\n{"text": "a \\ud800 b"}\n')
    spec = parse_fields({"text": {"type": "text"}})["text"]
    with pytest.raises(ManifestError, match=r"m\.jsonl:2, field 'text': .*unpaired surrogate"):
        read_column(read_table(tmp_path / "m.jsonl"), spec)


@pytest.mark.parametrize("row, message", [
    ({"audio_filepath": None, "text": "a"}, "audio_filepath must be a path"),
    ({"audio_filepath": "a.wav", "duration": "1.5", "text": "a"}, "duration must be a number of seconds"),
    ({"audio_filepath": "a.wav", "duration": float("nan"), "text": "a"}, "duration must be a number of seconds"),
    ({"audio_filepath": "a.wav", "text": 5}, "text must be a string"),
    (5, "a int, not a JSON object"),
])
def test_nemo_values_of_the_wrong_type_name_the_line(tmp_path: Path, row: object, message: str) -> None:
    from mmformer.data.readers.audio import write_wav

    write_wav(tmp_path / "a.wav", np.zeros(160), 16000)
    (tmp_path / "m.jsonl").write_text(json.dumps({"audio_filepath": "a.wav", "text": "x"}) + "\n" + json.dumps(row) + "\n")
    with pytest.raises(ValueError, match=rf"m\.jsonl:2: {message}") as info:
        read_manifest(tmp_path / "m.jsonl")
    assert _ours(info)


def test_a_json_integer_past_pythons_digit_limit_names_the_row(tmp_path: Path) -> None:
    (tmp_path / "p.jsonl").write_text('{"src": "a", "tgt": "b", "n": ' + "1" * 5000 + "}\n")
    with pytest.raises(ValueError, match=r"p\.jsonl, row 1: invalid JSON") as info:
        read_pairs(str(tmp_path / "p.jsonl"))
    assert _ours(info)


def _npz(**arrays: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return buf.getvalue()


def _d4rl(**changes: object) -> dict:
    base = {"observations": np.zeros((4, 2), np.float32), "actions": np.array([0, 1, 1, 0]),
            "rewards": np.ones(4, np.float32), "terminals": np.array([0, 1, 0, 1]), "timeouts": np.zeros(4)}
    return {**base, **changes}


def test_an_npz_whose_header_declares_a_huge_array_is_refused_before_allocating(tmp_path: Path) -> None:
    arrays = _d4rl()
    with zipfile.ZipFile(tmp_path / "d.npz", "w") as archive:  # valid zip CRCs: only the .npy header lies
        for key, value in arrays.items():
            buf = io.BytesIO()
            np.lib.format.write_array(buf, np.asarray(value))
            data = buf.getvalue()
            if key == "observations":  # (4, 2) float32 → 4e11 rows: 3.2 TB, from a 232-byte file
                data = data.replace(b"(4, 2), }", b"(400000000000, 2), }").replace(b" " * 11 + b"\n", b"\n", 1)
            archive.writestr(f"{key}.npy", data)
    with pytest.raises(ValueError, match=r"d\.npz: array 'observations' declares shape \(400000000000, 2\) .* but "
                                         r"stores \d+ bytes") as info:
        read_d4rl(tmp_path / "d.npz")
    assert _ours(info)


def test_a_pickled_npz_array_is_refused_naming_file_and_array(tmp_path: Path) -> None:
    (tmp_path / "d.npz").write_bytes(_npz(**_d4rl(rewards=np.array([1, "x", None, 2.0], dtype=object))))
    with pytest.raises(ValueError, match=r"d\.npz: array 'rewards' holds Python objects") as info:
        read_d4rl(tmp_path / "d.npz")
    assert _ours(info)


@pytest.mark.parametrize("changes, message", [
    ({"rewards": np.array(1.0)}, "the D4RL arrays must have one entry per step"),
    ({"rewards": np.ones((4, 3))}, r"rewards must be one value per step \(T,\)"),
    ({"actions": np.array([0, -1, 1, 0])}, r"discrete action ids must lie in \[0, 1048576\)"),
    ({"actions": np.array(["a", "b", "c", "d"])}, "actions must hold numbers"),
    ({"observations": np.full((4, 2), 1e300)}, "observations contain NaN or inf"),
    ({"ref_min_score": np.array([1.0, 2.0])}, "ref_min_score must be one finite number"),
])
def test_d4rl_arrays_that_would_train_on_garbage_are_refused(changes: dict, message: str) -> None:
    with pytest.raises(ValueError, match=rf"data\.npz: {message}") as info:
        episodes_from_arrays(_d4rl(**changes), "data.npz")
    assert _ours(info)


def _png_chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def test_image_decoder_errors_of_any_type_name_the_file(tmp_path: Path) -> None:
    png = b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", b"\x00\x00\x00\x04\x00\x00") + _png_chunk(b"IEND", b"")
    (tmp_path / "short.png").write_bytes(png)  # PIL: ValueError("Truncated IHDR chunk"), not an OSError
    with pytest.raises(ValueError, match=r"short\.png is not a readable image") as info:
        load_image(tmp_path / "short.png", 3, 8)
    assert _ours(info)


def test_an_image_header_declaring_a_decompression_bomb_is_refused(tmp_path: Path) -> None:
    ihdr = struct.pack(">IIBBBBB", 10000, 10000, 8, 0, 0, 0, 0)  # 100M gray pixels: PIL only warns
    png = b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", ihdr) + _png_chunk(b"IDAT", zlib.compress(b"\x00" * 64)) \
        + _png_chunk(b"IEND", b"")
    (tmp_path / "bomb.png").write_bytes(png)
    with pytest.raises(ValueError, match=r"bomb\.png: the image header declares too many pixels"):
        load_image(tmp_path / "bomb.png", 1, 8)


def test_a_corrupt_gzipped_idx_file_names_it(tmp_path: Path) -> None:
    import gzip

    data = bytearray(gzip.compress(bytes([0, 0, 8, 1, 0, 0, 0, 200]) + bytes(range(200)), mtime=0))
    data[10] ^= 0xFF  # the first deflate block header: zlib.error ("invalid block type"), which is no OSError
    (tmp_path / "labels-idx1-ubyte.gz").write_bytes(bytes(data))
    with pytest.raises(ValueError, match=r"labels-idx1-ubyte\.gz") as info:
        read_idx(tmp_path / "labels-idx1-ubyte.gz")
    assert _ours(info)

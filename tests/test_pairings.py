"""Any two modalities paired by configuration alone (issue #13): each pairing is fitted for a few steps,
tested and predicted through the ``mmformer`` command, from YAML, over small generated manifests.

The four cross-modal recipes run as shipped (``tasks/<recipe>.yaml``) with one override file written
here: tiny sizes, a few steps and this test's manifests instead of the embedded corpus. Text
classification has no recipe of its own (its YAML is written here), and the docs' plug-in
modality runs as docs/tokenizers.md gives it: its module, its data writer and its YAML.
"""

from __future__ import annotations

import csv
import importlib
import json
import math
import re
import sys
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any, Iterator

import pytest
import yaml

from mmformer.cli import main
from mmformer.tokenizers import base as tokenizer_base
from tests.data.manifests import COLORS, sample_rows, write_manifest
from tests.doc_sections import doc_section

ROOT = Path(__file__).resolve().parents[1]
FAST = ["--trainer.max_steps=3", "--trainer.limit_val_batches=1", "--trainer.num_sanity_val_steps=0",
        "--trainer.enable_progress_bar=false", "--trainer.enable_model_summary=false"]
SPANISH = {"zero": "cero", "one": "uno", "two": "dos", "three": "tres", "four": "cuatro", "five": "cinco",
           "six": "seis", "seven": "siete", "eight": "ocho", "nine": "nueve", "ten": "diez"}
SPLITS = {"train": (36, 0), "val": (12, 1), "test": (12, 2)}  # rows, seed


@pytest.fixture(scope="module")
def manifests(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Train/val/test manifests whose rows carry the field names of all four cross-modal recipes:
    ``image`` + ``caption``, ``audio_filepath`` + ``keyword`` (its colour), ``text`` (number words) and
    ``translation`` (the same words in Spanish). The WAVs are at 8 kHz: the recipes' 16 kHz fields
    resample them. JSONL, except text classification's CSV copy."""
    return write_pairing_manifests(tmp_path_factory.mktemp("manifests"))


def write_pairing_manifests(folder: Path) -> Path:
    """Writes the manifests of :func:`manifests` into ``folder`` (also the DDP recipe smoke test's data)."""
    for split, (n, seed) in SPLITS.items():
        rows = []
        for r in sample_rows(folder, n, seed=seed, rate=8000):
            rows.append({"image": r["image"], "caption": r["caption"], "audio_filepath": r["audio"],
                         "keyword": r["label"], "text": r["text"],
                         "translation": " ".join(SPANISH[w] for w in r["text"].split())})
        write_manifest(folder / f"{split}.jsonl", rows)
        write_manifest(folder / f"{split}.csv", rows)
    return folder


@dataclass(frozen=True)
class Pairing:
    """A pairing to run: its recipe (None: the YAML is ``override`` alone), the YAML layered over it, the
    test metrics it must log, the file ``predict`` writes and the field naming each prediction (the
    input file; None: the row, ``manifest:line``)."""

    recipe: str | None
    override: dict[str, Any]
    metrics: tuple[str, ...]
    predictions: str
    named_by: str | None = None
    suffix: str = "jsonl"  # of the manifests it reads


def _data(folder: Path, suffix: str = "jsonl", **extra: Any) -> dict[str, Any]:
    """The override of a ManifestData recipe's data: this test's manifests, small batches and vocabulary."""
    paths = {split: str(folder / f"{split}.{suffix}") for split in SPLITS}
    return {"init_args": {**paths, "data_dir": str(folder / "data"), "batch_size": 12, **extra}}


TINY = {"dim": 32, "depth": 1, "num_heads": 2, "mlp_ratio": 2.0}
TINY_SEQ2SEQ = {"val_generate_batches": 1, "generation": {"max_new_tokens": 6, "beam_size": 2}}


def _pairings(folder: Path) -> dict[str, Pairing]:
    return {
        "audio_classification": Pairing(
            "audio_classification.yaml",
            {"model": {"init_args": {"model": {"backbone": TINY, "num_classes": len(COLORS)}}}, "data": _data(folder)},
            ("test/acc",), "predictions.csv", "audio_filepath"),
        "image_captioning": Pairing(
            "image_captioning.yaml",
            {"model": {"init_args": {**TINY_SEQ2SEQ, "model": {"backbone": TINY, "decoder_depth": 1,
                                                                "target_vocab_size": 24}}},
             "data": _data(folder, vocab_size=24)},
            ("test/bleu", "test/chrf", "test/exact"), "predictions.tsv", "image"),
        "speech_translation": Pairing(
            "speech_translation.yaml",
            {"model": {"init_args": {**TINY_SEQ2SEQ, "model": {"backbone": TINY, "decoder_depth": 1,
                                                                "target_vocab_size": 40}}},
             "data": _data(folder, vocab_size=40)},
            ("test/bleu", "test/chrf"), "predictions.tsv", "audio_filepath"),
        "audio_text_contrastive": Pairing(
            "audio_text_contrastive.yaml",
            {"model": {"init_args": {"model": {"backbone": TINY, "backbone_b": TINY, "embed_dim": 32,
                                               "tokenizer_b": {"init_args": {"vocab_size": 40}}},
                                     "predict_labels": ["one", "two", "three"]}},
             "data": _data(folder, vocab_size=40, extra_test={"zeroshot": {  # the recipe's, over this test's rows
                 "path": str(folder / "test.jsonl"), "retrieval": False, "zeroshot": {"keyword": ["{}"]},
                 "fields": {"keyword": {"type": "label"}}}})},
            ("test/a2t_r@1", "test/t2a_r@1", "test/a2t_r@5", "test/zeroshot_keyword_acc"), "predictions.csv",
            "audio_filepath"),
        "text_classification": Pairing(
            None,
            {"seed_everything": 0,
             "model": {"class_path": "mmformer.tasks.ClassificationTask",
                       "init_args": {"model": {"tokenizer": {"class_path": "mmformer.tokenizers.TextTokenizer",
                                                             "init_args": {"vocab_size": 24, "max_len": 16}},
                                               "num_classes": len(COLORS), "backbone": TINY}}},
             "data": {"class_path": "mmformer.data.ManifestData",
                      **_data(folder, "csv", vocab_size=24, fields={"caption": {"type": "text", "max_len": 16},
                                                                    "keyword": {"type": "label"}},
                              inputs={"input": "caption", "label": "keyword"})}},
            ("test/acc",), "predictions.csv", None, "csv"),
    }


def _run(args: list[str]) -> Any:
    """One ``mmformer`` command, in this process; returns the CLI (its trainer holds the logged metrics)."""
    return main([*args, *FAST])


def _fit_test_predict(configs: list[str], root: Path, pairing: Pairing, ids: list[str]) -> None:
    """fit (3 steps) → test (the pairing's metrics are logged) → predict (one output per test row, in manifest
    order, named by ``ids``)."""
    common = [a for c in configs for a in ("--config", c)] + ["--trainer.default_root_dir", str(root)]
    fitted = _run(["fit", *common])
    ckpt = Path(fitted.trainer.checkpoint_callback.last_model_path)
    assert ckpt.is_file() and fitted.trainer.global_step == 3

    tested = _run(["test", *common, "--ckpt_path", str(ckpt)])
    logged = tested.trainer.callback_metrics
    for name in pairing.metrics:
        assert name in logged and math.isfinite(float(logged[name])), f"{name} not logged: {sorted(logged)}"
    with open(Path(tested.trainer.log_dir) / "metrics.csv") as f:
        assert set(pairing.metrics) <= set(next(csv.reader(f))), "the test metrics reach the CSV log"

    predicted = _run(["predict", *common, "--ckpt_path", str(ckpt)])
    out = Path(predicted.trainer.log_dir) / pairing.predictions
    if out.suffix == ".csv":
        with open(out) as f:
            named = [row[0] for row in csv.reader(f)][1:]  # under a header row
    else:
        named = [line.split("\t")[0] for line in out.read_text().splitlines()]
    assert named == ids


def _expected_ids(manifest: Path, named_by: str | None) -> list[str]:
    """What predictions over the JSONL/CSV ``manifest`` are named: its rows' input files, or ``manifest:line``."""
    if manifest.suffix == ".csv":
        with open(manifest, newline="") as f:
            rows, first = list(csv.DictReader(f)), 2  # line 1 is the header
    else:
        rows, first = [json.loads(line) for line in manifest.read_text().splitlines()], 1
    if named_by is None:
        return [f"{manifest}:{first + i}" for i in range(len(rows))]
    return [str(manifest.parent / row[named_by]) for row in rows]


@pytest.mark.parametrize("name", ["audio_classification", "image_captioning", "speech_translation",
                                  "audio_text_contrastive", "text_classification"])
def test_pairing_fits_tests_and_predicts_from_yaml_alone(name: str, manifests: Path, tmp_path: Path) -> None:
    pairing = _pairings(manifests)[name]
    override = tmp_path / "override.yaml"
    override.write_text(yaml.safe_dump(pairing.override))
    configs = ([str(ROOT / "tasks" / pairing.recipe)] if pairing.recipe else []) + [str(override)]
    ids = _expected_ids(manifests / f"test.{pairing.suffix}", pairing.named_by)
    _fit_test_predict(configs, tmp_path / "runs", pairing, ids)


# --- the docs' plug-in modality ------------------------------------------------------------------
def readme_plugin() -> tuple[str, str]:
    """The docs' "Plugging in a new modality" module (``my_pkg.py``) and recipe (``sensor.yaml``)."""
    section = doc_section("Plugging in a new modality")
    module = re.search(r"```python\n(.*?)```", section, re.S)
    recipe = re.search(r"```yaml\n(.*?)```", section, re.S)
    assert module and recipe and "my_pkg." in recipe[1] and "mmformer.data.ManifestData" in recipe[1]
    return module[1], recipe[1]


@contextmanager
def readme_plugin_module(work: Path) -> Iterator[ModuleType]:
    """The docs' module written to ``work/my_pkg.py`` and imported. It registers its tokenizer by name:
    into a copy of the registry, so that it cannot clash with the docs block ``tests/test_docs.py``
    runs in this same process."""
    (work / "my_pkg.py").write_text(readme_plugin()[0])
    registry = tokenizer_base._REGISTRY
    tokenizer_base._REGISTRY = {k: v for k, v in registry.items() if k != "sensor"}
    sys.path.insert(0, str(work))
    importlib.invalidate_caches()
    try:
        yield importlib.import_module("my_pkg")
    finally:
        tokenizer_base._REGISTRY = registry
        sys.path.remove(str(work))
        sys.modules.pop("my_pkg", None)


def test_readme_plugin_modality_fits_tests_and_predicts_over_a_manifest(tmp_path: Path,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    work = tmp_path / "work"
    work.mkdir()
    (work / "sensor.yaml").write_text(readme_plugin()[1])
    monkeypatch.chdir(work)  # as the docs run it: from the folder holding my_pkg.py
    with readme_plugin_module(work) as my_pkg:
        my_pkg.write_sines(n=48)  # the docs' own data writer, smaller
        ids = _expected_ids(Path("sines/test.jsonl"), None)  # the recipe names the manifest relative to the cwd
        _fit_test_predict(["sensor.yaml"], work / "runs", Pairing(None, {}, ("test/acc",), "predictions.csv"), ids)


# --- the docs' "Pair any two modalities" page ---------------------------------------------------
def _pairing_section() -> str:
    return doc_section("Pair any two modalities")


def test_readme_field_excerpts_are_the_recipes_own() -> None:
    excerpts = [b for b in re.findall(r"```yaml\n(.*?)```", _pairing_section(), re.S) if b.startswith("# tasks/")]
    assert len(excerpts) >= 3
    for block in excerpts:
        head = block.splitlines()[0]
        recipe = ROOT / head.split()[1]
        row = json.loads(head.split(" rows ", 1)[1])  # the example row the excerpt's comment shows
        shown = yaml.safe_load(block)
        data = yaml.safe_load(recipe.read_text())["data"]["init_args"]
        assert shown["fields"] == data["fields"] and shown["inputs"] == data["inputs"], recipe.name
        assert set(row) == set(data["fields"]), f"{recipe.name}: the example row has other fields"


def test_readme_own_files_walkthrough_reads_them_and_names_a_bad_row(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                    capsys: pytest.CaptureFixture[str]) -> None:
    """The section's manifest writer over a folder of clips, its YAML layered over the recipe; then one clip
    goes missing and the run stops at start-up with one line naming manifest, row and field."""
    from mmformer.cli import command as console
    from tests.data.manifests import tone

    section = _pairing_section()
    writer = re.search(r"```py\n(.*?)```", section, re.S)
    mine = re.search(r"```yaml\n(data:.*?)```", section, re.S)
    assert writer and mine and "model" not in yaml.safe_load(mine[1])  # only the data section changes
    keywords = [f"word{k:02d}" for k in range(12)]
    monkeypatch.chdir(tmp_path)
    for k, word in enumerate(keywords):
        for i in range(5):
            tone(tmp_path / "my_audio" / word / f"{i:03d}.wav", 200 + 40 * k, 0.1, rate=8000)
    exec(compile(writer[1], "docs/pairings.md", "exec"), {})
    (tmp_path / "my_keywords.yaml").write_text(mine[1])
    args = ["--config", str(ROOT / "tasks" / "audio_classification.yaml"), "--config", "my_keywords.yaml",
            "--trainer.default_root_dir", str(tmp_path / "runs")]

    cli = main(args, run=False)
    cli.datamodule.setup("fit")
    assert cli.datamodule.data_spec().class_names == keywords
    assert cli.model.complete_model_config(cli.datamodule.data_spec()).num_classes == 12  # the model follows
    assert {s: len(d) for s, d in cli.datamodule.datasets.items()} == {"train": 48, "val": 6, "test": 6}

    rows = (tmp_path / "my_audio" / "train.jsonl").read_text().splitlines()
    gone = json.loads(rows[16])["audio_filepath"]
    (tmp_path / "my_audio" / gone).unlink()
    capsys.readouterr()
    assert console.main(["fit", *args, *FAST]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    example = " ".join(re.search(r"`(error: my_audio/train\.jsonl:17,.*?)`", section, re.S)[1].split())
    assert len(err) == 1 and err[0].startswith(example.replace("my_audio/yes/017.wav", f"my_audio/{gone}")), err
    assert not list((tmp_path / "runs").glob("version_*")), "the failed run leaves no run folder"

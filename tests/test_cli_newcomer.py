"""What a new user meets when a recipe or an option is wrong (issue #41 item 6): one line on stderr naming
what was wrong and where, no traceback, no run folder left behind; and runs that print no noise."""

from __future__ import annotations

import csv
import io
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from mmformer.cli import command as console
from tests.data.manifests import sample_rows, write_manifest

ROOT = Path(__file__).resolve().parents[1]
DIGITS = str(ROOT / "tasks" / "image_classification_digits.yaml")
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}


def _one_line(capsys: pytest.CaptureFixture) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, "\n".join(err[-40:])
    return err[0]


def _image_manifest_recipe(folder: Path) -> Path:
    """A tiny ManifestData image classifier over ``folder/train.jsonl`` (PNG paths relative to ``folder``)."""
    write_manifest(folder / "train.jsonl", sample_rows(folder, 8))
    recipe = {
        "trainer": {"max_steps": 1, "enable_model_summary": False},
        "model": {"class_path": "mmformer.tasks.ClassificationTask", "init_args": {"model": {
            "tokenizer": {"class_path": "mmformer.tokenizers.ImagePatchTokenizer",
                          "init_args": {"image_size": 8, "in_chans": 3, "patch_size": 4}},
            "num_classes": 3, "backbone": {"dim": 32, "depth": 1, "num_heads": 2}}}},
        "data": {"class_path": "mmformer.data.ManifestData", "init_args": {
            "train": str(folder / "train.jsonl"), "batch_size": 4,
            "fields": {"image": {"type": "image", "size": 8}, "label": {"type": "label"}},
            "inputs": {"input": "image", "label": "label"}}},
    }
    path = folder / "recipe.yaml"
    path.write_text(yaml.safe_dump(recipe))
    return path


def test_a_role_naming_an_undeclared_field_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    recipe, runs = _image_manifest_recipe(tmp_path), tmp_path / "runs"
    status = console.main(["fit", "--config", str(recipe), "--data.init_args.inputs={input: picture, label: label}",
                           "--trainer.default_root_dir", str(runs)])
    err = _one_line(capsys)
    assert status == 1
    assert err.startswith("error: inputs: role 'input' maps to field 'picture', which data.init_args.fields does "
                          "not declare (declared: ['image', 'label'])"), err
    assert not runs.exists(), "no run folder (nor the runs/ it made) is left behind"


def _wrong(tmp_path: Path, old: str, new: str) -> str:
    path = tmp_path / "mine.yaml"
    text = Path(DIGITS).read_text()
    assert old in text
    path.write_text(text.replace(old, new))
    return str(path)


@pytest.mark.parametrize(("given", "message"), [
    ("mmformer.tasks.ClassificatonTask", "model: cannot import class_path 'mmformer.tasks.ClassificatonTask'; "
                                         "did you mean 'mmformer.tasks.ClassificationTask'?"),
    ("mmformer.taks.ClassificationTask", "model: cannot import class_path 'mmformer.taks.ClassificationTask'; "
                                         "did you mean 'mmformer.tasks.ClassificationTask'?"),
    ("ClassificatonTask", "model: cannot import class_path 'ClassificatonTask' (give the full dotted import path); "
                          "did you mean 'mmformer.tasks.ClassificationTask'?"),
])
def test_a_wrong_class_path_in_a_file_says_did_you_mean(given: str, message: str, tmp_path: Path,
                                                        capsys: pytest.CaptureFixture) -> None:
    mine = _wrong(tmp_path, "class_path: mmformer.tasks.ClassificationTask", f"class_path: {given}")
    assert console.main(["fit", "--config", mine]) == 2
    assert _one_line(capsys) == f"error: {message} (in {mine})"


@pytest.mark.parametrize(("option", "message"), [
    ("--data=mmformer.data.DigitData", "data: cannot import class_path 'mmformer.data.DigitData'; "
                                       "did you mean 'mmformer.data.DigitsData'?"),
    ("--model.init_args.model.tokenizer=mmformer.tokenizers.ImagePatchTokenizr",
     "model.init_args.model.tokenizer: cannot import class_path 'mmformer.tokenizers.ImagePatchTokenizr'; "
     "did you mean 'mmformer.tokenizers.ImagePatchTokenizer'?"),
    ("--model.init_args.optim.lr=fast", "model.init_args.optim.lr: expected float, got 'fast'"),
    ("--trainer.max_epochs=many", "trainer.max_epochs: expected int or null, got 'many'"),
    ("--model.init_args.model.pool=maxx",
     "model.init_args.model.pool: expected one of 'cls', 'mean', 'attention', 'last', got 'maxx'"),
])
def test_a_wrong_class_path_or_value_as_an_option_is_one_line(option: str, message: str,
                                                               capsys: pytest.CaptureFixture) -> None:
    assert console.main(["fit", "--config", DIGITS, option]) == 2
    assert _one_line(capsys) == f"error: {message} (from option {option.split('=')[0]})"


def test_a_value_of_the_wrong_type_in_a_file_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    mine = _wrong(tmp_path, "lr: 0.003", "lr: fast")
    assert console.main(["fit", "--config", mine]) == 2
    assert _one_line(capsys) == f"error: model.init_args.optim.lr: expected float, got 'fast' (in {mine})"


def test_predict_reads_a_manifest_from_stdin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                             capsys: pytest.CaptureFixture) -> None:
    recipe = _image_manifest_recipe(tmp_path)
    monkeypatch.chdir(tmp_path)  # the rows' file paths resolve against the current folder
    monkeypatch.setattr(sys, "stdin", io.StringIO('{"image": "media/0_1.png"}\n{"image": "media/0_2.png"}\n'))
    status = console.main(["predict", "--config", str(recipe), "--data.init_args.predict=-",
                           "--trainer.default_root_dir", str(tmp_path / "runs"), "--trainer.enable_progress_bar=false"])
    assert status == 0, capsys.readouterr().err[-2000:]
    with open(tmp_path / "runs" / "version_0" / "predictions.csv") as f:
        named = [row[0] for row in csv.reader(f)][1:]
    assert named == ["media/0_1.png", "media/0_2.png"]


@pytest.mark.slow
def test_progress_bar_and_evaluation_runs_print_no_noise(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """With ``max_steps`` the bar reads ``Epoch 1``, not ``Epoch 1/-2``; test prints neither Lightning's
    ModelCheckpoint "dirpath has changed" warning nor its logging-service tip."""
    root = ["--trainer.default_root_dir", str(tmp_path)]
    assert console.main(["fit", "--config", DIGITS, *root, "--trainer.max_steps=2", "--trainer.max_epochs=null",
                         "--trainer.limit_train_batches=1", "--trainer.limit_val_batches=1"]) == 0
    out = capsys.readouterr().out
    assert "Epoch 1" in out and "/-2" not in out, out[-2000:]
    ckpt = tmp_path / "version_0" / "checkpoints" / "last.ckpt"
    res = subprocess.run([sys.executable, "-m", "mmformer", "test", "--config", DIGITS, *root, "--ckpt_path",
                          str(ckpt), "--trainer.limit_test_batches=1", "--trainer.enable_progress_bar=false"],
                         env=ENV, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    assert "test/acc" in res.stdout
    assert "dirpath has changed" not in res.stderr and "Tip:" not in res.stderr + res.stdout, res.stderr[-3000:]


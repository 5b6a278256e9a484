"""Export to safetensors + config.yaml, and rebuilding the plain model without Lightning."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file, save_file

from mmformer.cli import main
from mmformer.cli.export import export_model, load_exported
from mmformer.cli.command import main as console_main
from mmformer.tasks.legacy import FORMAT_VERSION

ROOT = Path(__file__).resolve().parents[1]
DIGITS = str(ROOT / "tasks" / "image_classification_digits.yaml")


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory):
    """A digits run of 3 steps: (cli, last checkpoint, one test batch of images)."""
    root = tmp_path_factory.mktemp("run")
    cli = main(["fit", "--config", DIGITS, "--trainer.default_root_dir", str(root), "--trainer.max_steps=3",
                "--trainer.limit_val_batches=1", "--trainer.enable_progress_bar=false"])
    cli.datamodule.setup("test")
    x = next(iter(cli.datamodule.test_dataloader()))["input"]
    return cli, Path(cli.trainer.checkpoint_callback.last_model_path), x


@pytest.fixture(scope="module")
def exported(trained, tmp_path_factory: pytest.TempPathFactory) -> Path:
    _, ckpt, _ = trained
    return export_model(DIGITS, ckpt, tmp_path_factory.mktemp("export") / "digits")


def test_exported_model_gives_the_trained_logits(trained, exported: Path) -> None:
    cli, _, x = trained
    assert sorted(p.name for p in exported.iterdir()) == ["config.yaml", "model.safetensors"]
    doc = yaml.safe_load((exported / "config.yaml").read_text())
    assert (doc["format"], doc["version"], doc["state_format"]) == ("mmformer-export", 3, FORMAT_VERSION)
    assert doc["model"]["class_path"] == "mmformer.tasks.ClassificationTask"
    assert doc["model"]["init_args"]["model"]["backbone"]["dim"] == 64  # resolved, not just the recipe's text
    cfg = doc["model_config"]  # the typed config the core loader builds (mmformer.models.exported)
    assert cfg["type"] == "ClassifierConfig" and cfg["backbone"]["dim"] == 64
    assert cfg["tokenizer"]["class_path"] == "mmformer.tokenizers.image.ImagePatchTokenizer"

    model = load_exported(exported)
    assert type(model).__name__ == "Classifier" and not model.training
    weights = load_file(str(exported / "model.safetensors"))
    assert set(weights) == set(cli.model.model.state_dict())  # plain model keys, no "model." prefix
    with torch.no_grad():
        assert torch.allclose(model(x), cli.model.eval()(x), atol=1e-6)


def test_console_export_subcommand(trained, tmp_path: Path) -> None:
    cli, ckpt, x = trained
    out = tmp_path / "cli_export"
    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    res = subprocess.run([sys.executable, "-m", "mmformer", "export", "--config", DIGITS,
                          "--ckpt_path", str(ckpt), "--out", str(out)],
                         capture_output=True, text=True, cwd=tmp_path, env=env, timeout=120)
    assert res.returncode == 0, res.stderr
    assert str(out / "model.safetensors") in res.stdout and str(out / "config.yaml") in res.stdout
    with torch.no_grad():
        assert torch.allclose(load_exported(out)(x), cli.model.eval()(x), atol=1e-6)



def test_export_command_errors_are_one_line(trained, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert console_main(["export", "--config", DIGITS, "--ckpt_path", str(tmp_path / "nothere.ckpt"),
                         "--out", str(tmp_path)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "nothere.ckpt does not exist" in err[0], err
    # Extra arguments override the recipe; a checkpoint of another size is named, not a raw RuntimeError.
    assert console_main(["export", "--config", DIGITS, "--ckpt_path", str(trained[1]), "--out", str(tmp_path),
                         "--model.init_args.model.backbone.depth=3"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "does not fit the model" in err[0] and "blocks.2" in err[0], err
    assert not (tmp_path / "model.safetensors").exists()
    assert console_main(["export", "--config", DIGITS, "--out", str(tmp_path)]) == 2
    assert capsys.readouterr().err.startswith("error: mmformer export needs --ckpt_path")
    assert console_main(["export", "--config", DIGITS, "--ckpt_path", str(trained[1]), "--out", str(tmp_path),
                         "--model.init_args.model.backbone.dpth=3"]) == 2
    assert capsys.readouterr().err.strip() == ("error: unknown key 'dpth' in model.init_args.model.backbone; did you mean "
                                               "'depth'? (from option --model.init_args.model.backbone.dpth)")


def test_missing_and_foreign_exports_are_clear_errors(exported: Path, tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="nothere"):
        load_exported(tmp_path / "nothere")
    partial = tmp_path / "partial"
    partial.mkdir()
    (partial / "config.yaml").write_text((exported / "config.yaml").read_text())
    with pytest.raises(FileNotFoundError, match="model.safetensors"):
        load_exported(partial)

    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "model.safetensors").write_bytes((exported / "model.safetensors").read_bytes())
    (foreign / "config.yaml").write_text("model:\n  class_path: mmformer.tasks.ClassificationTask\n")
    with pytest.raises(ValueError, match="not an mmformer export"):
        load_exported(foreign)


def test_weights_that_do_not_match_name_the_keys(exported: Path, tmp_path: Path) -> None:
    weights = load_file(str(exported / "model.safetensors"))
    key = next(k for k in weights if k.startswith("backbone."))
    weights["renamed.weight"] = weights.pop(key)
    tampered = tmp_path / "tampered"
    tampered.mkdir()
    (tampered / "config.yaml").write_text((exported / "config.yaml").read_text())
    save_file(weights, str(tampered / "model.safetensors"))
    with pytest.raises(ValueError, match=r"missing keys \[.*" + key.replace(".", r"\.")) as err:
        load_exported(tampered)
    assert "unexpected keys ['renamed.weight']" in str(err.value)

    (tampered / "model.safetensors").write_bytes(b"not safetensors")
    with pytest.raises(ValueError, match="cannot be read"):
        load_exported(tampered)


def test_tied_weights_are_exported() -> None:
    from mmformer.cli.export import _plain_tensors

    emb = torch.nn.Embedding(5, 3)
    proj = torch.nn.Linear(3, 5, bias=False)
    proj.weight = emb.weight
    model = torch.nn.ModuleDict({"emb": emb, "proj": proj})
    tensors = _plain_tensors(model.state_dict(keep_vars=False))
    ptrs = {t.untyped_storage().data_ptr() for t in tensors.values()}
    assert len(ptrs) == len(tensors) and torch.equal(tensors["emb.weight"], tensors["proj.weight"])

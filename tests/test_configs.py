"""Every YAML under tasks/, configs/ and bench/configs/ parses through the CLI (presets are data; litgpt's
config-hub test)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from mmformer.cli import main
from tests.data_free import build_without_data
from tests.tokenizers.test_plugin import RECIPE

ROOT = Path(__file__).resolve().parents[1]
RECIPES = sorted((ROOT / "tasks").glob("*.yaml")) + sorted((ROOT / "bench" / "configs").glob("*.yaml"))
MODEL_PRESETS = sorted((ROOT / "configs" / "model").glob("*.yaml"))
TRAINER_PRESETS = sorted((ROOT / "configs" / "trainer").glob("*.yaml"))


def _printed_config(args: list[str], capsys: pytest.CaptureFixture[str]) -> dict:
    with pytest.raises(SystemExit) as exit_info:
        main(["fit", *args, "--print_config"])
    out = capsys.readouterr().out
    assert exit_info.value.code in (0, None), out
    return yaml.safe_load(out)


@pytest.fixture
def base_recipe(tmp_path: Path) -> str:
    path = tmp_path / "sensor.yaml"
    path.write_text(RECIPE)
    return str(path)


def test_presets_exist() -> None:
    assert {p.stem for p in MODEL_PRESETS} >= {"tiny", "small", "base"}
    assert {p.stem for p in TRAINER_PRESETS} >= {"cpu", "gpu_bf16", "ddp", "fsdp"}


@pytest.mark.parametrize("recipe", RECIPES, ids=lambda p: p.name)
def test_recipe_parses(recipe: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = _printed_config(["--config", str(recipe)], capsys)
    assert cfg["model"]["class_path"] and cfg["data"]["class_path"]


@pytest.mark.parametrize("preset", MODEL_PRESETS, ids=lambda p: p.name)
def test_model_preset_composes_after_a_recipe(preset: Path, base_recipe: str, capsys) -> None:
    wanted = yaml.safe_load(preset.read_text())["model"]["init_args"]["model"]["backbone"]
    cfg = _printed_config(["--config", base_recipe, "--config", str(preset)], capsys)
    backbone = cfg["model"]["init_args"]["model"]["backbone"]
    assert {k: backbone[k] for k in wanted} == wanted
    assert cfg["model"]["init_args"]["model"]["num_classes"] == 3  # the recipe's own keys survive the merge


def test_speech_voices_overlay_composes_after_the_speech_recipe(capsys) -> None:
    overlay = yaml.safe_load((ROOT / "configs/data/speech_voices.yaml").read_text())["data"]["init_args"]
    cfg = _printed_config(["--config", str(ROOT / "tasks/speech_recognition.yaml"),
                           "--config", str(ROOT / "configs/data/speech_voices.yaml")], capsys)
    data = cfg["data"]["init_args"]
    corpus, settings = data["embedded"]["init_args"], overlay["embedded"]["init_args"]  # the builder's settings
    assert corpus["festival_fraction"] == settings["festival_fraction"] > 0 and corpus["heldout_synthesizer"] == "flite"
    assert corpus["num_train"] == 20000  # the recipe's corpus size survives the merge
    assert data["augment"]["lowpass_prob"] == overlay["augment"]["lowpass_prob"] > 0
    assert data["vocab_size"] == 256 and data["max_target_len"] == 64  # the recipe's own keys survive the merge
    # twice the recipe's schedule, with no time limit cutting it short; the recipe's other trainer keys kept
    recipe = yaml.safe_load((ROOT / "tasks/speech_recognition.yaml").read_text())["trainer"]
    assert cfg["trainer"]["max_steps"] == 2 * recipe["max_steps"] and cfg["trainer"]["max_time"] is None
    assert cfg["trainer"]["val_check_interval"] == recipe["val_check_interval"]


def _backbones(model: object) -> list:
    """The encoders a task's model reads its inputs with (the ones a size preset sizes)."""
    m = model.model  # type: ignore[attr-defined]
    return [getattr(m, "backbone", None) or getattr(m, "encoder", None) or m.backbone_a]


@pytest.mark.parametrize("recipe", RECIPES, ids=lambda p: p.name)
def test_every_recipe_builds_with_the_small_preset(recipe: Path) -> None:
    """Every task names its backbone ``backbone``, so the size presets compose with every recipe."""
    preset = ROOT / "configs" / "model" / "small.yaml"
    want = yaml.safe_load(preset.read_text())["model"]["init_args"]["model"]["backbone"]
    cli = main(["--config", str(recipe), "--config", str(preset), "--trainer.logger=false", "--trainer.callbacks=[]",
                "--trainer.enable_checkpointing=false"], run=False)
    build_without_data(cli.model)
    for backbone in _backbones(cli.model):
        c = backbone.config
        assert (c.dim, len(backbone.blocks), c.num_heads) == (want["dim"], want["depth"], want["num_heads"])
    decoder = getattr(cli.model.model, "decoder", None)
    if decoder is not None:  # a seq2seq decoder copies the backbone's width and heads
        assert (decoder.config.dim, decoder.config.num_heads, decoder.config.memory_dim) == (
            want["dim"], want["num_heads"], want["dim"])


@pytest.mark.parametrize("preset", TRAINER_PRESETS, ids=lambda p: p.name)
def test_trainer_preset_composes(preset: Path, base_recipe: str, capsys) -> None:
    wanted = yaml.safe_load(preset.read_text())
    cfg = _printed_config(["--config", base_recipe, "--trainer", str(preset)], capsys)
    for key, value in wanted.items():
        got = cfg["trainer"][key]
        if isinstance(value, dict):  # class_path + init_args: the given init_args survive
            assert got["class_path"] == value["class_path"]
            for arg in value.get("init_args", {}):
                assert arg in got["init_args"]
        else:
            assert got == value, key


def test_dotted_override_wins_over_files(base_recipe: str, capsys) -> None:
    cfg = _printed_config(
        ["--config", base_recipe, "--config", str(ROOT / "configs/model/small.yaml"),
         "--model.init_args.model.backbone.depth=3"], capsys,
    )
    assert cfg["model"]["init_args"]["model"]["backbone"]["depth"] == 3
    assert cfg["model"]["init_args"]["model"]["backbone"]["dim"] == 384


def test_unknown_key_is_a_clear_error(base_recipe: str, capsys) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["fit", "--config", base_recipe, "--model.init_args.model.backbone.width=3"])
    assert exit_info.value.code != 0
    assert "width" in capsys.readouterr().err


def test_runs_log_to_tensorboard_and_csv_and_save_config(base_recipe: str, tmp_path: Path) -> None:
    cli = main(["fit", "--config", base_recipe, "--trainer.default_root_dir", str(tmp_path),
                "--trainer.max_steps=2", "--trainer.limit_val_batches=1", "--trainer.log_every_n_steps=1"])
    kinds = {type(lg).__name__ for lg in cli.trainer.loggers}
    assert kinds == {"TensorBoardLogger", "CSVLogger"}
    assert all(Path(lg.save_dir) == tmp_path for lg in cli.trainer.loggers)
    assert list(tmp_path.rglob("metrics.csv")) and list(tmp_path.rglob("events.out.tfevents.*"))
    assert list(tmp_path.rglob("config.yaml")), "the run's full config is saved beside its logs"


def test_fsdp_preset_wraps_the_backbone_blocks() -> None:
    """The preset names the real Block class (tests/tasks/test_fsdp.py runs the preset on CPU processes)."""
    import pydoc

    from mmformer.backbone import Block

    strategy = yaml.safe_load((ROOT / "configs/trainer/fsdp.yaml").read_text())["strategy"]
    assert [pydoc.locate(p) for p in strategy["init_args"]["auto_wrap_policy"]] == [Block]

"""A run's config.yaml of an earlier version names options that moved (split names, builder settings):
the command says where each went in one line, not a usage dump."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from mmformer.cli.command import main as console_main

ROOT = Path(__file__).resolve().parents[3]


@pytest.mark.parametrize("recipe, old, value, new", [
    ("speech_recognition", "train_manifest", "a.jsonl", "train"),
    ("speech_recognition", "num_train", 48, "embedded.init_args.num_train"),
    ("speech_recognition", "heldout_synthesizer", "flite", "embedded.init_args.heldout_synthesizer"),
    ("translation", "test_path", "t.tsv", "test"),
    ("translation", "max_sentences", 2500, "embedded.init_args.max_sentences"),
    ("clip", "num_eval", 64, "embedded.init_args.num_eval"),
    ("decision_transformer", "episodes_per_level", 4, "embedded.init_args.episodes_per_level"),
    ("decision_transformer", "path", "d.npz", "train"),
])
def test_an_old_data_option_names_its_new_place(tmp_path: Path, capsys: pytest.CaptureFixture[str], recipe: str,
                                                old: str, value: object, new: str) -> None:
    doc = yaml.safe_load((ROOT / "tasks" / f"{recipe}.yaml").read_text())
    doc["data"]["init_args"][old] = value  # as an earlier version saved it in the run's config.yaml
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump(doc, sort_keys=False))
    assert console_main(["fit", "--config", str(config), "--print_config"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == f"error: unknown key '{old}' in data.init_args: it was renamed to '{new}' (in {config})"

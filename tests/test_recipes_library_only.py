"""Every recipe is configuration over library classes: no recipe needs a Python class of its own."""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any, Iterator

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
RECIPES = sorted((ROOT / "tasks").glob("*.yaml"))
LIBRARIES = ("mmformer.", "corpora.", "pytorch_lightning.", "lightning.", "torch.")  # corpora: the builders


def _dotted(node: Any) -> Iterator[str]:
    """Every ``class_path`` and ``embedded`` builder path in a parsed recipe."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key in ("class_path", "embedded") and isinstance(value, str):
                yield value
            else:
                yield from _dotted(value)
    elif isinstance(node, list):
        for value in node:
            yield from _dotted(value)


def _resolve(path: str) -> Any:
    module, _, name = path.rpartition(".")
    return getattr(importlib.import_module(module), name)


@pytest.mark.parametrize("recipe", RECIPES, ids=lambda p: p.name)
def test_recipe_names_only_library_classes(recipe: Path) -> None:
    paths = list(_dotted(yaml.safe_load(recipe.read_text())))
    assert paths, f"{recipe.name} names no class"
    for path in paths:
        assert path.startswith(LIBRARIES), f"{recipe.name}: {path} is not a library class"
        assert callable(_resolve(path)), f"{recipe.name}: {path} is not callable"


def test_the_cross_modal_recipes_build_their_data_from_embedded_builders() -> None:
    """The four any-to-any recipes read manifests through the generic DataModule, filled by a builder."""
    for name in ("audio_classification", "image_captioning", "speech_translation", "audio_text_contrastive"):
        data = yaml.safe_load((ROOT / "tasks" / f"{name}.yaml").read_text())["data"]
        assert data["class_path"] == "mmformer.data.ManifestData", name
        args = data["init_args"]
        assert args["embedded"].startswith("corpora."), name
        assert set(args["inputs"].values()) <= set(args["fields"]), name  # roles map to declared fields

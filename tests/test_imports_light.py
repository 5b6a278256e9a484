"""The contract and the backbone import without the heavy optional stacks; lazy names still resolve."""

from __future__ import annotations

import ast
import importlib
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# Loaded only by the modules that need them: audio features, BPE, Lightning, timm's data stack, plots.
HEAVY = ("torchaudio", "sentencepiece", "pytorch_lightning", "lightning", "timm", "torchvision", "matplotlib",
         "jsonargparse", "torchmetrics", "yaml", "safetensors", "PIL", "sklearn", "scipy", "gymnasium", "h5py",
         "soundfile", "sacrebleu")
LIGHT_IMPORTS = """
import mmformer.tokenizers.base, mmformer.backbone, mmformer.layers, mmformer.testing
from mmformer import TokenBatch, Encoder, BackboneConfig
from mmformer.tokenizers import TokenBatch, ModalityTokenizer, register_tokenizer
"""


def _loaded_after(code: str) -> list[str]:
    """Top-level packages of HEAVY that a fresh interpreter has in sys.modules after running ``code``."""
    probe = code + f"\nimport sys, json\nprint(json.dumps(sorted({{m.split('.')[0] for m in sys.modules}} & set({HEAVY!r}))))"
    res = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    return json.loads(res.stdout.strip().splitlines()[-1])


def test_contract_and_backbone_import_without_heavy_packages() -> None:
    assert _loaded_after(LIGHT_IMPORTS) == []


def test_the_probe_sees_a_heavy_import() -> None:
    """The check above can fail: asking for the audio tokenizer loads torchaudio."""
    assert "torchaudio" in _loaded_after("from mmformer.tokenizers import AudioTokenizer")


def _type_checking_names(path: Path) -> dict[str, str]:
    """``{name: module}`` of the imports in a module's ``if TYPE_CHECKING:`` block."""
    names = {}
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.If) and isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING":
            for imp in node.body:
                assert isinstance(imp, ast.ImportFrom) and imp.module
                names.update({a.name: imp.module for a in imp.names})
    return names


@pytest.mark.parametrize("package", ["mmformer", "mmformer.tokenizers", "mmformer.cli"])
def test_every_lazy_name_resolves_and_is_declared_for_type_checkers(package: str) -> None:
    mod = importlib.import_module(package)
    lazy = mod._LAZY
    assert set(lazy) <= set(mod.__all__) and set(lazy) <= set(dir(mod))
    assert _type_checking_names(Path(mod.__file__)) == lazy  # what tools see is what runs
    for name in mod.__all__:
        value = getattr(mod, name)
        if name in lazy:
            assert value is getattr(importlib.import_module(lazy[name]), name)
    with pytest.raises(AttributeError, match="no attribute 'Nope'"):
        getattr(mod, "Nope")


def test_list_tokenizers_lists_the_built_ins_in_a_fresh_process() -> None:
    code = "from mmformer.tokenizers import list_tokenizers\nprint(sorted(list_tokenizers(False)))"
    res = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == str(["audio", "image", "text", "trajectory"])

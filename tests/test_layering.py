"""The import graph of mmformer runs one way (DESIGN.md): layers → tokenizers → backbone →
heads/losses/models → decoding → data → tasks → cli, without cycles, and the core never imports Lightning.

The rules and what counts as an import are in ``tests/layering.py``. A new module must be placed in
``LAYERS`` (longest dotted prefix wins).
"""

from __future__ import annotations

from pathlib import Path

from tests.layering import check, imports_of, module_name

ROOT = Path(__file__).resolve().parents[1]

LAYERS = {
    "mmformer.lazy": 0,  # the PEP 562 re-export helper of package __init__s (imports nothing of ours)
    "mmformer.layers": 0,
    "mmformer.tokenizers": 1,
    "mmformer.backbone": 2,
    **dict.fromkeys(("mmformer.heads", "mmformer.losses", "mmformer.bigram", "mmformer.retrieval",
                     "mmformer.text_metrics", "mmformer.viz", "mmformer.testing"), 3),
    # Plain nn.Module models (and the rollouts that drive a policy model in an environment).
    **dict.fromkeys(("mmformer.models", "mmformer.rollout"), 4),
    "mmformer.pretrained": 4,  # converters of peer checkpoints into those models (torch + safetensors alone)
    "mmformer.finetune": 4,  # LoRA, freezing, layer-wise lr decay, loading by module prefix (torch alone)
    # Search outside the model (greedy/sampling/beam/CTC/hybrid, processors, the CPU fast path): above the models,
    # which satisfy its typing.Protocol without importing it; still the Lightning-free core (CORE_MAX).
    "mmformer.decoding": 4.5,
    "mmformer.data": 5,
    "mmformer.tasks": 6,
    "mmformer.checkpoint": 6,  # reads checkpoint files with torch alone; tasks may use it
    # The command line, in one package (mmformer.cli), and the checkpoint averaging it runs.
    **dict.fromkeys(("mmformer.cli", "mmformer.average", "mmformer.__main__"), 7),
}
EXEMPT = ("mmformer",)  # the root __init__: the public face, lazy re-exports only
CORE_MAX = 4.5  # layers 0-4.5 (everything left of data) never import Lightning


def test_imports_follow_the_layer_order_without_cycles() -> None:
    problems = check(ROOT, "mmformer", LAYERS, EXEMPT, core_max=CORE_MAX)
    assert not problems, f"{len(problems)} import-graph offences:\n" + "\n".join(problems)


def test_the_checker_reports_hidden_cycles_upward_imports_and_unplaced_modules(tmp_path: Path) -> None:
    pkg = tmp_path / "pkg"
    (pkg / "sub").mkdir(parents=True)
    files = {
        "__init__.py": "from pkg.high import top\n",  # the exempt root may import anything
        "low.py": "import torch\n\ndef f():\n    from pkg import high  # hidden in a function\n    return high\n",
        "high.py": "from pkg.low import f\nimport pytorch_lightning as pl\n\ndef top():\n    return f()\n",
        "mid.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from .high import top\n",
        "stray.py": "",
        "sub/__init__.py": "from pkg.sub.a import A\n",  # re-exporting a child is no cycle
        "sub/a.py": "from pkg.sub import b\nA = 1\n",
        "sub/b.py": "from lightning.pytorch import Trainer\nfrom . import a\n",
    }
    for name, text in files.items():
        (pkg / name).write_text(text)
    layers = {"pkg.low": 0, "pkg.mid": 1, "pkg.high": 2, "pkg.sub": 0}
    problems = check(tmp_path, "pkg", layers, exempt=("pkg",), core_max=0)
    text = "\n".join(problems)
    assert "upward import: pkg/low.py:4 pkg.low (layer 0) imports pkg.high (layer 2)" in text
    assert "upward import: pkg/mid.py:3 pkg.mid (layer 1) imports pkg.high (layer 2) (under TYPE_CHECKING)" in text
    assert "import cycle: pkg.high <-> pkg.low" in text and "pkg/low.py:4 pkg.low imports pkg.high" in text
    assert "import cycle: pkg.sub.a <-> pkg.sub.b" in text
    assert "no layer: pkg.stray" in text
    assert "lightning in the core: pkg/sub/b.py:1 pkg.sub.b (layer 0) imports lightning.pytorch" in text
    assert not any("pytorch_lightning" in p for p in problems)  # pkg.high is layer 2 > core_max
    assert len(problems) == 6, text  # nothing about the root or pkg.sub's re-export


def test_imports_are_resolved_relative_and_inside_functions(tmp_path: Path) -> None:
    pkg = tmp_path / "pkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("")
    (pkg / "b.py").write_text("def g():\n    from .a import x\n    from . import a\n")
    mods = {module_name(p, tmp_path): p for p in pkg.glob("*.py")}
    assert [(i.target, i.line) for i in imports_of(pkg / "b.py", "pkg.b", mods)] == [("pkg.a", 2), ("pkg.a", 3)]

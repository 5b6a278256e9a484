"""Typed model configs and ``build(cfg)``: every model family round-trips config → dict → config → build, the tasks
build their models through it, and an export of every family (and older exports without ``model_config``: versions 2
and 1, the latter from the pre-redesign weights of tests/fixtures/legacy) loads in one fresh process where
``pytorch_lightning``, ``lightning`` and ``lightning_fabric`` cannot be imported, giving the same outputs."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
from functools import partial
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml

from mmformer.backbone import BackboneConfig
from mmformer.cli.export import write_export
from mmformer.models import (CausalLMConfig, ClassifierConfig, MaskedLMConfig, Seq2SeqConfig, TokenizerSpec, build,
                             config_from_dict, config_to_dict)
from mmformer.models.exported import FORMAT, save_exported
from mmformer.models.legacy import FORMAT_VERSION
from mmformer.tasks import (ClassificationTask, ContrastiveTask, DecisionTransformerTask, PrefixLMTask,
                            Seq2SeqTask)
from mmformer.tasks.multitask import MultiTaskTask
from mmformer.tokenizers import ImagePatchTokenizer, TextTokenizer
from mmformer.tokenizers.trajectory import TrajectoryTokenizer

ROOT = Path(__file__).resolve().parents[2]
TINY = dict(dim=16, depth=1, num_heads=2, mlp_ratio=2.0)
IMAGE = partial(ImagePatchTokenizer, image_size=8, patch_size=4, in_chans=1)  # what YAML's class_path becomes
TEXT = partial(TextTokenizer, vocab_size=20, max_len=16)
TEXT_SPEC = TokenizerSpec("mmformer.tokenizers.text.TextTokenizer", {"vocab_size": 20, "max_len": 16})

# How each family is run, in this process and in the fresh one (the same source, exec'ed in both).
RUNNERS = '''
def run(family, model, x):
    if family in ("classifier", "causal_lm", "masked_lm"):
        return [model(x["input"])]
    if family == "seq2seq":
        return [model(x["source"], x["target"])]
    if family == "prefix_lm":
        return [model.decode(x["target"], model.encode(x["source"])).logits]
    if family == "contrastive":
        return list(model(x["a"], x["b"]))
    if family == "contrastive_embeds":
        out = model(x["a"], x["b"])
        return [out.embeds_a, out.embeds_b]
    if family == "decision_transformer":
        return [model(x)]
    if family == "multitask":
        return [model("images", x["input"]), model.models["translate"](x["source"], x["target"])]
    raise KeyError(family)
'''
FAMILIES = ("classifier", "seq2seq", "prefix_lm", "causal_lm", "masked_lm", "contrastive", "decision_transformer",
            "multitask")
_scope: dict[str, Any] = {}
exec(RUNNERS, _scope)
run = _scope["run"]

# The fresh process: Lightning blocked before anything imports, every export loaded by the core loader and run.
CHILD = RUNNERS + '''
import sys

BLOCKED = ("pytorch_lightning", "lightning", "lightning_fabric")

class _NoLightning:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
            raise ImportError(f"{name} is blocked in this test")
        return None

sys.meta_path.insert(0, _NoLightning())
import torch
from mmformer.models.exported import load_exported

torch.manual_seed(1234)  # another draw than the exporting process's: the weights must come from the file
cases = torch.load(sys.argv[1], weights_only=True)
for name, case in cases.items():
    model = load_exported(case["folder"])
    with torch.no_grad():
        got = run(case["family"], model, case["inputs"])
    assert len(got) == len(case["expected"]), name
    for g, e in zip(got, case["expected"]):
        assert torch.allclose(g, e, atol=1e-5), (name, (g - e).abs().max())
    print("OK", name, type(model).__name__)
assert not any(m.split(".")[0] in BLOCKED for m in sys.modules)
'''


def _tasks() -> dict[str, Any]:
    """family → a tiny task (or, for the families no task trains, the model config)."""
    torch.manual_seed(0)
    b = BackboneConfig(**TINY)
    return {
        "classifier": ClassificationTask(IMAGE, 3, b, pool="attention"),
        "seq2seq": Seq2SeqTask(TEXT, 20, b, decoder_depth=1, max_target_len=16, share_source_embedding=True,
                               ctc_weight=0.3),
        "prefix_lm": PrefixLMTask(20, partial(IMAGE, cls_token=False), b, text_positions="rope", max_len=16),
        "contrastive": ContrastiveTask(IMAGE, TEXT, b, shared_backbone=False, embed_dim=8),
        "decision_transformer": DecisionTransformerTask(partial(TrajectoryTokenizer, state_dim=3, act_dim=2,
                                                                discrete_actions=False), b, context=4),
        "multitask": MultiTaskTask({"images": partial(ClassificationTask, IMAGE, 3),
                                    "translate": partial(Seq2SeqTask, TEXT, 20, max_target_len=16)}, b),
        "causal_lm": CausalLMConfig(TEXT_SPEC, BackboneConfig(**TINY, causal=True)),
        "masked_lm": MaskedLMConfig(TEXT_SPEC, BackboneConfig(**TINY)),
    }


def _inputs(family: str, model: torch.nn.Module) -> dict[str, Any]:
    g = torch.Generator().manual_seed(0)
    images, ids = torch.rand(2, 1, 8, 8, generator=g), torch.randint(1, 20, (2, 6), generator=g)
    if family == "decision_transformer":
        return model.tokenizer.dummy_inputs(2)
    return {"input": images if family in ("classifier", "multitask") else ids, "source": images if family ==
            "prefix_lm" else ids, "target": ids[:, :4], "a": images, "b": ids}


@pytest.mark.slow  # spawns a python process
def test_every_family_loads_from_its_export_without_lightning(tmp_path: Path) -> None:
    cases = {}
    for family, task in _tasks().items():
        folder = tmp_path / family
        if family == "decision_transformer":  # buffers travel too: statistics the data would set
            task.model.tokenizer.set_state_stats(torch.arange(3.0), torch.full((3,), 2.0))
        if isinstance(task, torch.nn.Module):
            write_export(task, folder)  # the writer `mmformer export` runs on the checkpoint's task
            model = task.model
        else:
            model = build(task)
            save_exported(model, task, folder)
        doc = yaml.safe_load((folder / "config.yaml").read_text())
        assert doc["model_config"]["type"] == type(task.model_config if hasattr(task, "model_config") else task).__name__
        x = _inputs(family, model)
        with torch.no_grad():
            cases[family] = {"family": family, "folder": str(folder), "inputs": x,
                             "expected": run(family, model.eval(), x)}
    assert {c["family"] for c in cases.values()} == set(FAMILIES)  # the list: every model family
    cases.update(_legacy_exports(tmp_path))
    cases.update(_fixture_exports(tmp_path))
    torch.save(cases, tmp_path / "cases.pt")
    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    res = subprocess.run([sys.executable, "-c", CHILD, str(tmp_path / "cases.pt")], capture_output=True, text=True,
                         env=env, timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    assert sorted(line.split()[1] for line in res.stdout.splitlines() if line.startswith("OK")) == sorted(cases)


def _legacy_exports(tmp_path: Path) -> dict[str, Any]:
    """Exports as mmformer wrote them before ``model_config``: the task's class_path and init_args only (version 2),
    and a contrastive model of state layout 1 (towers named image/text, in its weights and its arguments)."""
    torch.manual_seed(0)
    b = BackboneConfig(**TINY)
    task = ClassificationTask(IMAGE, 3, b)
    folder = tmp_path / "legacy_classifier"
    save_exported(task.model, None, folder, {"class_path": "mmformer.tasks.ClassificationTask", "init_args": {
        "tokenizer": {"class_path": "mmformer.tokenizers.image.ImagePatchTokenizer",
                      "init_args": {"image_size": 8, "patch_size": 4, "in_chans": 1}},
        "num_classes": 3, "backbone": dataclasses.asdict(b), "pool": "mean", "label_smoothing": 0.1}})
    _set_version(folder, 2, FORMAT_VERSION)
    x = _inputs("classifier", task.model)
    out = {"classifier_v2": ("classifier", folder, task.model, x)}

    task = ContrastiveTask(IMAGE, TEXT, b, embed_dim=8)
    folder = tmp_path / "legacy_contrastive"
    save_exported(task.model, None, folder, {"class_path": "mmformer.tasks.contrastive.ContrastiveTask", "init_args": {
        "image_tokenizer": {"class_path": "mmformer.tokenizers.ImagePatchTokenizer",
                            "init_args": {"image_size": 8, "patch_size": 4, "in_chans": 1}},
        "text_tokenizer": {"class_path": "mmformer.tokenizers.TextTokenizer",
                           "init_args": {"vocab_size": 20, "max_len": 16}},
        "backbone": dataclasses.asdict(b), "embed_dim": 8, "image_pool": "mean"}})
    _set_version(folder, 2, 1)
    from safetensors.torch import load_file, save_file
    towers = {f"{part}_{new}.": f"{old}_{part}." for part in ("tokenizer", "backbone", "pool", "proj")
              for new, old in (("a", "image"), ("b", "text"))}  # the layout before the towers were named a and b
    old = {next((o + k[len(n):] for n, o in towers.items() if k.startswith(n)), k): v
           for k, v in load_file(str(folder / "model.safetensors")).items()}
    assert "image_backbone.norm.weight" in old and "text_tokenizer.embed.weight" in old
    save_file(old, str(folder / "model.safetensors"))
    out["contrastive_v1"] = ("contrastive", folder, task.model, _inputs("contrastive", task.model))
    cases = {}
    for name, (family, folder, model, x) in out.items():
        with torch.no_grad():
            cases[name] = {"family": family, "folder": str(folder), "inputs": x,
                           "expected": run(family, model.eval(), x)}
    return cases


FIXTURES = ROOT / "tests" / "fixtures" / "legacy"
_OLD_BACKBONE = dict(dim=8, depth=1, num_heads=2, mlp_ratio=1.0)  # tests/fixtures/legacy/make.py's cfg()
# The pre-redesign tasks of tests/fixtures/legacy/make.py as a version-1 export's config.yaml recorded them
# (``model: {class_path, init_args}`` with the arguments of that time), and how to run each on the fixture's inputs.
_OLD_TASKS: dict[str, tuple[str, dict[str, Any]]] = {
    "classification": ("mmformer.tasks.ClassificationTask", {
        "tokenizer": {"class_path": "mmformer.tokenizers.ImagePatchTokenizer",
                      "init_args": {"image_size": 8, "patch_size": 4, "in_chans": 1}},
        "num_classes": 3, "backbone": _OLD_BACKBONE, "pool": "attention", "label_smoothing": 0.0}),
    "seq2seq": ("mmformer.tasks.Seq2SeqTask", {  # encoder (now backbone); its CTC head was the task's, not exported
        "source_tokenizer": {"class_path": "mmformer.tokenizers.TextTokenizer",
                             "init_args": {"vocab_size": 16, "max_len": 8}},
        "target_vocab_size": 16, "encoder": _OLD_BACKBONE, "decoder": _OLD_BACKBONE, "target_positions": "learned",
        "max_target_len": 8, "ctc_weight": 0.5, "metrics": ["wer"]}),
    "contrastive": ("mmformer.tasks.ContrastiveTask", {
        "image_tokenizer": {"class_path": "mmformer.tokenizers.ImagePatchTokenizer",
                            "init_args": {"image_size": 8, "patch_size": 4, "cls_token": False}},
        "text_tokenizer": {"class_path": "mmformer.tokenizers.TextTokenizer",
                           "init_args": {"vocab_size": 16, "max_len": 8}},
        "backbone": _OLD_BACKBONE, "image_pool": "attention", "embed_dim": 8}),
    "decision_transformer": ("mmformer.tasks.DecisionTransformerTask", {
        "tokenizer": {"class_path": "mmformer.tokenizers.trajectory.TrajectoryTokenizer",
                      "init_args": {"state_dim": 3, "act_dim": 2, "discrete_actions": False, "max_timestep": 16}},
        "backbone": _OLD_BACKBONE, "context": 4}),
}


def _fixture_exports(tmp_path: Path) -> dict[str, Any]:
    """The pre-redesign checkpoints of tests/fixtures/legacy as the export writer of that time wrote them (version 1:
    ``task.model``'s weights, no ``state_format``), with the outputs the old package computed."""
    from safetensors.torch import save_file

    cases = {}
    for name, (class_path, init_args) in _OLD_TASKS.items():
        ckpt = torch.load(FIXTURES / f"{name}.pt", weights_only=True)
        folder = tmp_path / f"fixture_{name}"
        folder.mkdir()
        save_file({k[len("model."):]: v.contiguous() for k, v in ckpt["state_dict"].items() if k.startswith("model.")},
                  str(folder / "model.safetensors"))
        doc = {"format": FORMAT, "version": 1, "model": {"class_path": class_path, "init_args": init_args}}
        (folder / "config.yaml").write_text(yaml.safe_dump(doc, sort_keys=False))
        x, want = ckpt["inputs"], ckpt["outputs"]
        if name == "classification":
            family, inputs, expected = "classifier", {"input": x["images"]}, [want["logits"]]
        elif name == "seq2seq":  # the old CTC logits are not checked: the export never held that head
            family, inputs, expected = "seq2seq", {"source": x["source"], "target": x["target_in"]}, [want["logits"]]
        elif name == "contrastive":
            family, inputs = "contrastive_embeds", {"a": x["images"], "b": x["ids"]}
            expected = [want["image_embeds"], want["text_embeds"]]
        else:
            family, inputs, expected = "decision_transformer", x["traj"], [want["actions"]]
        cases[f"fixture_{name}"] = {"family": family, "folder": str(folder), "inputs": inputs, "expected": expected}
    return cases


def _set_version(folder: Path, version: int, state_format: int) -> None:
    doc = yaml.safe_load((folder / "config.yaml").read_text())
    assert doc["format"] == FORMAT and "model_config" not in doc
    doc.update(version=version, state_format=state_format)
    (folder / "config.yaml").write_text(yaml.safe_dump(doc, sort_keys=False))


@pytest.mark.parametrize("family", ["classifier", "seq2seq", "prefix_lm", "contrastive", "decision_transformer",
                                    "multitask", "causal_lm", "masked_lm"])
def test_config_round_trip_builds_the_same_model(family: str) -> None:
    task = _tasks()[family]
    cfg = task.model_config if isinstance(task, torch.nn.Module) else task
    doc = yaml.safe_load(yaml.safe_dump(config_to_dict(cfg)))  # through a config file
    again = config_from_dict(doc)
    assert again == cfg
    torch.manual_seed(0)
    first = build(cfg).state_dict()
    torch.manual_seed(0)
    second = build(again).state_dict()
    assert {k: v.shape for k, v in first.items()} == {k: v.shape for k, v in second.items()}
    assert all(torch.equal(first[k], second[k]) for k in first)  # same draws, same order


def test_tasks_build_their_model_from_the_config() -> None:
    torch.manual_seed(0)
    task = Seq2SeqTask(TEXT, 20, BackboneConfig(**TINY), decoder_depth=1, max_target_len=16)
    cfg = task.model_config
    assert isinstance(cfg, Seq2SeqConfig) and cfg.source_tokenizer == TEXT_SPEC
    assert (cfg.decoder.depth, cfg.decoder.causal, cfg.decoder.memory_dim, cfg.ctc_vocab_size) == (1, True, 16, 0)
    torch.manual_seed(0)
    built = build(cfg).state_dict()
    assert all(torch.equal(v, built[k]) for k, v in task.model.state_dict().items())


def test_configs_name_what_is_wrong() -> None:
    with pytest.raises(ValueError, match="'type' set to one of"):
        config_from_dict({"type": "Nope"})
    with pytest.raises(ValueError, match="no fields \\['depht'\\]"):
        config_from_dict({"type": "ClassifierConfig", "tokenizer": {"class_path": "x.Y"}, "num_classes": 2,
                          "depht": 3})
    with pytest.raises(ValueError, match="not a ModalityTokenizer|cannot be imported"):
        build(ClassifierConfig(TokenizerSpec("mmformer.backbone.Encoder"), 2, BackboneConfig(**TINY)))
    lam = ClassificationTask(lambda d: TextTokenizer(d, 20), 3, BackboneConfig(**TINY))
    with pytest.raises(ValueError, match="python callable"):
        config_to_dict(lam.model_config)
    with pytest.raises(ValueError, match="python callable"):
        write_export(lam, Path("/nonexistent/never"))  # nothing to rebuild it from: said before anything is written

"""Multi-node on one machine (two launches, one process each) and compiled-vs-eager agreement on CPU."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from mmformer.checkpoint import read_checkpoint
from tests.test_pairings import _pairings, write_pairing_manifests
from mmformer.models.config import ClassifierConfig

ROOT = Path(__file__).resolve().parents[2]
DIGITS = str(ROOT / "tasks" / "image_classification_digits.yaml")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_two_nodes_on_one_machine_train_one_model_and_write_one_checkpoint(tmp_path: Path) -> None:
    port = _free_port()
    cmd = [sys.executable, "-m", "mmformer.cli", "fit", "--config", DIGITS, "--trainer.default_root_dir", str(tmp_path),
           "--trainer", str(ROOT / "configs/trainer/multinode.yaml"), "--trainer.accelerator=cpu",
           "--trainer.devices=1", "--trainer.precision=32-true", "--trainer.max_steps=6",
           "--trainer.limit_val_batches=2", "--trainer.enable_progress_bar=false"]
    procs = []
    for node in (0, 1):
        env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT), "MASTER_ADDR": "127.0.0.1",
               "MASTER_PORT": str(port), "NODE_RANK": str(node)}
        procs.append(subprocess.Popen(cmd, env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                      text=True))
    outs = [p.communicate(timeout=300)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs[0][-2000:] + outs[1][-2000:]
    assert "GLOBAL_RANK: 0" in outs[0] + outs[1] and "GLOBAL_RANK: 1" in outs[0] + outs[1]
    ckpts = list(tmp_path.rglob("*.ckpt"))
    assert [c.name for c in ckpts if c.name != "last.ckpt"] and len({c.parent for c in ckpts}) == 1
    assert read_checkpoint(next(c for c in ckpts if c.name == "last.ckpt"))["global_step"] == 6


@pytest.mark.slow
def test_compiled_and_eager_backbones_agree_on_cpu() -> None:
    from mmformer import BackboneConfig
    from mmformer.tasks import ClassificationTask
    from mmformer.tokenizers import ImagePatchTokenizer

    def build(compiled: bool) -> ClassificationTask:
        torch.manual_seed(0)
        tok = lambda d: ImagePatchTokenizer(d, image_size=8, patch_size=2, in_chans=1)  # noqa: E731
        return ClassificationTask(ClassifierConfig(tok, num_classes=3, backbone=BackboneConfig(dim=32, depth=2, num_heads=2)), compile_backbone=compiled)

    eager, compiled = build(False), build(True)
    assert eager.state_dict().keys() == compiled.state_dict().keys()
    x, y = torch.randn(4, 1, 8, 8), torch.tensor([0, 1, 2, 1])
    losses = []
    for task in (eager, compiled):
        loss = torch.nn.functional.cross_entropy(task(x), y)
        loss.backward()
        losses.append(loss)
    assert torch.allclose(losses[0], losses[1], atol=1e-5)
    for (name, p), q in zip(eager.named_parameters(), compiled.parameters()):
        assert torch.allclose(p.grad, q.grad, atol=1e-5), name


RECIPES = sorted((ROOT / "tasks").glob("*.yaml"))


def _smoke_args(recipe: Path, folder: Path) -> list[str]:
    """``mmformer fit`` arguments of one recipe's DDP smoke run (2 steps, 1 val batch) writing into ``folder``."""
    # tests/tasks/smoke/<recipe>.args: one CLI override a line (``{tmp}`` = the run's folder), so a
    # recipe whose embedded corpus takes minutes to build can smoke-test on a small one.
    extra_file = Path(__file__).parent / "smoke" / f"{recipe.stem}.args"
    extra = extra_file.read_text().replace("{tmp}", str(folder)).split() if extra_file.exists() else []
    # The cross-modal recipes over ManifestData: the small manifests and tiny model of tests/test_pairings.py
    # (their embedded corpora take minutes to synthesize).
    pairings = _pairings(folder / "manifests")
    if recipe.stem in pairings:
        write_pairing_manifests(folder / "manifests")
        override = folder / "override.yaml"
        override.write_text(yaml.safe_dump(pairings[recipe.stem].override))
        extra += ["--config", str(override)]
    return ["--config", str(recipe), "--trainer.default_root_dir", str(folder), "--trainer",
            str(ROOT / "configs/trainer/ddp.yaml"), "--trainer.accelerator=cpu", "--trainer.max_steps=2",
            "--trainer.limit_val_batches=1", "--trainer.enable_progress_bar=false", *extra]


def _run_in_one_process_pair(plan: list[dict], root: Path) -> str:
    """Runs ``plan``'s fits in one pair of DDP processes (tests/tasks/ddp_driver.py); both ranks' output."""
    (root / "plan.json").write_text(json.dumps(plan))
    port, procs = _free_port(), []
    for rank in (0, 1):
        env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT), "MASTER_ADDR": "127.0.0.1",
               "MASTER_PORT": str(port), "NODE_RANK": "0", "LOCAL_RANK": str(rank)}
        procs.append(subprocess.Popen([sys.executable, str(Path(__file__).parent / "ddp_driver.py"),
                                       str(root / "plan.json")], env=env, cwd=ROOT, stdout=subprocess.PIPE,
                                      stderr=subprocess.STDOUT, text=True))
    outs = []
    for p in procs:
        try:
            outs.append(p.communicate(timeout=120 + 90 * len(plan))[0])
        except subprocess.TimeoutExpired:
            for q in procs:
                q.kill()
            outs.append(p.communicate()[0] + "\n(timed out: killed)")
    return "\n".join(outs)


@pytest.mark.slow
def test_every_recipe_takes_ddp_steps_on_two_cpu_processes(tmp_path: Path) -> None:
    """Each recipe fits 2 steps under 2-process DDP (gloo) and writes a step-2 checkpoint. One test, not one per
    recipe: all fits share one pair of processes, so the imports are paid once (pytest-xdist's loadgroup,
    which would keep per-recipe tests on one worker, does not group under pytest 9.2: pytest-xdist#1386)."""
    plan = [{"name": r.stem, "args": _smoke_args(r, tmp_path / r.stem)} for r in RECIPES]
    out = _run_in_one_process_pair(plan, tmp_path)
    failed = []
    for r in RECIPES:
        ok = all(f"DDP-RUN {r.stem} rank {rank} step 2 ok" in out for rank in (0, 1))
        ckpts = list((tmp_path / r.stem).rglob("last.ckpt"))
        if not ok or not ckpts or read_checkpoint(ckpts[0])["global_step"] != 2:
            failed.append(r.stem)
    assert not failed, f"recipes that did not take 2 DDP steps (the run stops at the first error): {failed}\n{out[-4000:]}"
    assert "GLOBAL_RANK: 1" in out

"""Exact resume under 2-process DDP (gloo): a run killed or stopped inside an epoch >= 1 and resumed with
``--ckpt_path last`` trains with the uninterrupted run's per-step losses, over manifest data
(:class:`~mmformer.data.ManifestData`) and multi-task data (:class:`~mmformer.data.MultiTaskData` of two
manifest children).

All fits share one pair of processes (tests/tasks/ddp_driver.py): per data, an uninterrupted run; a run that
crashes right after a mid-epoch checkpoint (as a killed or preempted run would) and its resume; a run stopped
gracefully at the same step (as ``max_time`` stops one) and its resume. The tiny
text classifiers read the small generated manifests of tests/test_pairings.py.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml

from mmformer.checkpoint import read_checkpoint
from tests.data.manifests import COLORS
from tests.tasks.ddp_driver import read_losses
from tests.tasks.test_distributed import _run_in_one_process_pair
from tests.test_pairings import TINY, _pairings, write_pairing_manifests

ROOT = Path(__file__).resolve().parents[2]
FAST = ["--trainer", str(ROOT / "configs/trainer/ddp.yaml"), "--trainer.accelerator=cpu",
        "--trainer.limit_val_batches=1", "--trainer.num_sanity_val_steps=0", "--trainer.enable_progress_bar=false",
        "--trainer.enable_model_summary=false"]
# 36 training rows, 18 a rank: 5 steps an epoch (batches of 4) for the manifest run, 10 (both children's) for the
# multi-task one. (crash after, total steps): the crash lands inside epoch 1, the run ends in epoch 2.
STEPS = {"manifest": (7, 12), "multitask": (13, 22)}


def _manifest_config(folder: Path) -> dict[str, Any]:
    """Text classification over the manifests' CSV (number words -> colour), batches of 4."""
    config = copy.deepcopy(_pairings(folder)["text_classification"].override)
    config["data"]["init_args"]["batch_size"] = 4
    return config


def _multitask_config(folder: Path) -> dict[str, Any]:
    """Two text classifiers over one shared causal backbone: number words -> colour and captions -> colour."""
    base = _manifest_config(folder)

    def child_data(field: str) -> dict[str, Any]:
        data = copy.deepcopy(base["data"])
        data["init_args"].update(data_dir=str(folder / f"data_{field}"), inputs={"input": field, "label": "keyword"},
                                 fields={field: {"type": "text", "max_len": 16}, "keyword": {"type": "label"}})
        return data

    child = {"class_path": "mmformer.tasks.ClassificationTask",
             "init_args": {"model": {"tokenizer": base["model"]["init_args"]["model"]["tokenizer"],
                                     "num_classes": len(COLORS)}}}
    return {"seed_everything": 0,
            "model": {"class_path": "mmformer.tasks.multitask.MultiTaskTask",
                      "init_args": {"model": {"backbone": {**TINY, "causal": True}},
                                    "tasks": {"words": copy.deepcopy(child), "captions": copy.deepcopy(child)}}},
            "data": {"class_path": "mmformer.data.MultiTaskData",
                     "init_args": {"datamodules": {"words": child_data("text"), "captions": child_data("caption")},
                                   "sampling": "fixed", "weights": {"words": 0.5, "captions": 0.5}, "seed": 3}}}


def _plan(name: str, config: Path, root: Path, crash: int, total: int) -> list[dict[str, Any]]:
    """The uninterrupted run; the run killed after step ``crash`` and its resume; the run stopped gracefully
    there (as ``max_time`` stops one: Lightning ends the epoch early) and its resume. Same trainer settings."""
    every = root / f"every{crash}.yaml"  # a checkpoint (and last.ckpt) at the crash step, as a kill would find
    every.parent.mkdir(parents=True, exist_ok=True)
    every.write_text(yaml.safe_dump({"callbacks": [{"class_path": "pytorch_lightning.callbacks.ModelCheckpoint",
                                                    "init_args": {"every_n_train_steps": crash, "save_last": True}}]}))
    args = ["--config", str(config), *FAST, "--trainer", str(every), f"--trainer.max_steps={total}"]
    plan = [{"name": f"{name}_full", "args": [*args, "--trainer.default_root_dir", str(root / "full")],
             "losses": str(root / "full")}]
    for how, end in (("killed", "crash_after"), ("stopped", "stop_after")):
        cut = ["--trainer.default_root_dir", str(root / how)]
        plan += [{"name": f"{name}_{how}", "args": [*args, *cut], "losses": str(root / how), end: crash},
                 {"name": f"{name}_{how}_resumed", "args": [*args, *cut, "--ckpt_path", "last"],
                  "losses": str(root / how)}]
    return plan


def _runs(root: Path) -> str:
    """Every fit of this module in one pair of DDP processes; both ranks' output."""
    folder = write_pairing_manifests(root / "manifests")
    plan = []
    for name, config in (("manifest", _manifest_config(folder)), ("multitask", _multitask_config(folder))):
        (root / f"{name}.yaml").write_text(yaml.safe_dump(config))
        plan += _plan(name, root / f"{name}.yaml", root / name, *STEPS[name])
    return _run_in_one_process_pair(plan, root)


def _problem(root: Path, out: str, name: str, how: str) -> str | None:
    """What is wrong with the ``how`` (killed/stopped) run of ``name`` and its resume, or None."""
    crash, total = STEPS[name]
    for rank in (0, 1):
        ended = f"crashed after step {crash}" if how == "killed" else f"step {crash} ok"
        for line in (f"{name}_full rank {rank} step {total} ok", f"{name}_{how} rank {rank} {ended}",
                     f"{name}_{how}_resumed rank {rank} step {total} ok"):
            if f"DDP-RUN {line}" not in out:
                return f"no 'DDP-RUN {line}' in the output:\n{out[-5000:]}"
    # the interrupted run's last.ckpt (the resumed run writes its own in a later version folder)
    cut = min(map(read_checkpoint, (root / name / how).glob("version_*/checkpoints/last.ckpt")),
              key=lambda c: c["global_step"])
    in_epoch = cut["loops"]["fit_loop"]["epoch_loop.batch_progress"]["current"]["completed"]
    if (cut["global_step"], cut["epoch"] >= 1, in_epoch > 0) != (crash, True, True):
        return f"not a mid-epoch checkpoint of epoch >= 1 at step {crash}: step {cut['global_step']}, epoch " \
               f"{cut['epoch']}, {in_epoch} batches into it"
    for rank in (0, 1):
        full, resumed = read_losses(root / name / "full", rank), read_losses(root / name / how, rank)
        if sorted(full) != list(range(1, total + 1)) or sorted(resumed) != sorted(full):
            return f"rank {rank}: steps recorded {sorted(full)} (full) and {sorted(resumed)} (resumed)"
        differ = {s: (full[s], resumed[s]) for s in full if abs(full[s] - resumed[s]) > 1e-6}
        if differ:
            return f"rank {rank}: steps whose loss differs after the resume at {crash} (full, resumed): {differ}"
    return None


@pytest.mark.slow
def test_runs_ended_inside_epoch_1_resume_with_the_uninterrupted_losses(tmp_path: Path) -> None:
    """One test, not one per case: the ten fits share one pair of processes, which xdist would start once per
    worker running a case."""
    out = _runs(tmp_path)
    problems = {f"{name} {how}": _problem(tmp_path, out, name, how)
                for name in STEPS for how in ("killed", "stopped")}
    failed = {case: p for case, p in problems.items() if p}
    assert not failed, "\n".join(f"{case}: {p}" for case, p in failed.items())

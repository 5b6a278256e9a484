"""The FSDP preset (configs/trainer/fsdp.yaml) on two CPU processes (gloo): fit, resume and export.

One pair of processes (tests/tasks/ddp_driver.py) runs the digits recipe, tiny, four times: under DDP and
under the FSDP preset for 8 steps, then under FSDP killed after step 5 (a crash right after that step's
checkpoint) and resumed with ``--ckpt_path last``.
FSDP's per-step losses must match DDP's (the same data and updates, sharded: only float rounding differs),
the resumed run's must equal the uninterrupted one's, and ``mmformer export`` of the FSDP checkpoint must
write the same tensors as the DDP one's.
"""

from __future__ import annotations

import pickle
import shutil
import zipfile
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from mmformer.checkpoint import read_checkpoint
from mmformer.cli.export import WEIGHTS, export_model, load_exported
from mmformer.tasks.fsdp import FSDPStrategy
from tests.tasks.ddp_driver import read_losses
from tests.tasks.test_distributed import _run_in_one_process_pair

ROOT = Path(__file__).resolve().parents[2]
DIGITS = str(ROOT / "tasks" / "image_classification_digits.yaml")
MODEL = ["--model.init_args.model.backbone.dim=32", "--model.init_args.model.backbone.num_heads=2"]  # depth 2: two FSDP units
# The preset's CPU variant: the trainer file first, then what a CPU needs (no bf16 autocast on gloo processes).
CPU = ["--trainer.accelerator=cpu", "--trainer.devices=2", "--trainer.precision=32-true"]
RUN = ["--config", DIGITS, "--data.init_args.batch_size=32", "--trainer.max_steps=8", "--trainer.limit_val_batches=1",
       "--trainer.num_sanity_val_steps=0", "--trainer.enable_progress_bar=false", *MODEL]
SHARDED = "--trainer.strategy.init_args.state_dict_type=sharded"
STEPS, STOP = 8, 5  # a digits epoch is 26 steps of 32 a rank: the crash lands mid-epoch
EVERY_5_STEPS = """
callbacks:
  - class_path: pytorch_lightning.callbacks.ModelCheckpoint
    init_args: {every_n_train_steps: 5, save_last: true}
"""


def _fit(name: str, preset: str, root: Path, losses: Path, *extra: str, crash_after: int | None = None) -> dict:
    every = root.parent / "every5.yaml"
    every.write_text(EVERY_5_STEPS)
    args = ["--trainer", str(ROOT / "configs" / "trainer" / preset), *CPU, "--trainer", str(every), *RUN,
            "--trainer.default_root_dir", str(root), *extra]
    return {"name": name, "args": args, "losses": str(losses), **({"crash_after": crash_after} if crash_after else {})}


def _last(root: Path) -> Path:
    return max(root.rglob("last.ckpt"), key=lambda p: read_checkpoint(p)["global_step"])


@pytest.mark.slow
def test_fsdp_preset_fits_resumes_and_exports_like_ddp_on_two_cpu_processes(tmp_path: Path) -> None:
    plan = [_fit("ddp", "ddp.yaml", tmp_path / "ddp", tmp_path / "ddp"),
            _fit("fsdp", "fsdp.yaml", tmp_path / "fsdp", tmp_path / "fsdp"),
            _fit("fsdp_killed", "fsdp.yaml", tmp_path / "cut", tmp_path / "cut", crash_after=STOP),
            _fit("fsdp_resumed", "fsdp.yaml", tmp_path / "cut", tmp_path / "cut", "--ckpt_path", "last"),
            # sharded checkpoints (a folder per checkpoint, torch.distributed.checkpoint) resume alike
            _fit("sharded_killed", "fsdp.yaml", tmp_path / "sharded", tmp_path / "sharded", SHARDED, crash_after=STOP),
            _fit("sharded_resumed", "fsdp.yaml", tmp_path / "sharded", tmp_path / "sharded", SHARDED, "--ckpt_path",
                 "last")]
    out = _run_in_one_process_pair(plan, tmp_path)
    for rank in (0, 1):
        for name in ("ddp", "fsdp", "fsdp_resumed", "sharded_resumed"):
            assert f"DDP-RUN {name} rank {rank} step {STEPS} ok" in out, out[-5000:]
        for name in ("fsdp_killed", "sharded_killed"):
            assert f"DDP-RUN {name} rank {rank} crashed after step {STOP}" in out, out[-5000:]

    for rank in (0, 1):
        ddp, fsdp = read_losses(tmp_path / "ddp", rank), read_losses(tmp_path / "fsdp", rank)
        resumed, sharded = read_losses(tmp_path / "cut", rank), read_losses(tmp_path / "sharded", rank)
        assert sorted(ddp) == sorted(fsdp) == sorted(resumed) == sorted(sharded) == list(range(1, STEPS + 1))
        # the same data and updates, the gradients reduce-scattered instead of all-reduced: rounding at most
        # (measured: equal on 2 processes)
        assert all(abs(fsdp[s] - ddp[s]) < 1e-5 for s in ddp), (rank, ddp, fsdp)
        # the same data, weights, optimizer state and RNG after the resume: equal losses
        assert all(abs(resumed[s] - fsdp[s]) < 1e-6 for s in fsdp), (rank, fsdp, resumed)
        assert all(abs(sharded[s] - fsdp[s]) < 1e-6 for s in fsdp), (rank, fsdp, sharded)

    # A sharded checkpoint whose .metadata (unpickled by torch) names other code is refused before loading.
    folder = next((tmp_path / "sharded").rglob("last.ckpt"))
    assert folder.is_dir() and (folder / ".metadata").is_file()
    tampered = tmp_path / "tampered.ckpt"
    shutil.copytree(folder, tampered)
    with open(tampered / ".metadata", "wb") as f:
        pickle.dump(_Evil(), f)
    with pytest.raises(ValueError, match="cannot be loaded safely"):
        FSDPStrategy().load_checkpoint(tampered)

    # FSDP writes one full checkpoint file (gathered on rank 0) with DDP's keys, readable weights-only.
    ddp_ckpt, fsdp_ckpt = _last(tmp_path / "ddp"), _last(tmp_path / "fsdp")
    assert fsdp_ckpt.is_file() and zipfile.is_zipfile(fsdp_ckpt)
    fsdp_state, ddp_state = read_checkpoint(fsdp_ckpt)["state_dict"], read_checkpoint(ddp_ckpt)["state_dict"]
    assert list(fsdp_state) == list(ddp_state)
    # weight decay on the same parameters (sharded ones are 1-D; the split goes by their unsharded dims)
    groups = {name: [len(g["params"]) for g in read_checkpoint(c)["optimizer_states"][0]["param_groups"]]
              for name, c in (("ddp", ddp_ckpt), ("fsdp", fsdp_ckpt))}
    assert groups["fsdp"] == groups["ddp"] and groups["ddp"][0] > 0, groups
    assert not [k for k in fsdp_state if "_fsdp_wrapped_module" in k or "flat_param" in k]

    exported = {name: export_model(DIGITS, ckpt, tmp_path / f"export_{name}", *MODEL)
                for name, ckpt in (("ddp", ddp_ckpt), ("fsdp", fsdp_ckpt))}
    weights = {name: load_file(str(folder / WEIGHTS)) for name, folder in exported.items()}
    assert list(weights["fsdp"]) == list(weights["ddp"])
    for key, t in weights["fsdp"].items():
        assert torch.equal(t, fsdp_state[f"model.{key}"]), key  # the checkpoint's weights, unchanged
        assert t.dtype == weights["ddp"][key].dtype and t.shape == weights["ddp"][key].shape, key
        assert torch.allclose(t, weights["ddp"][key], atol=1e-5), key  # trained alike (measured: equal)
    x = torch.rand(4, 1, 16, 16)
    with torch.no_grad():
        logits = [load_exported(folder)(x) for folder in exported.values()]
    assert logits[0].shape == (4, 10) and torch.allclose(logits[0], logits[1], atol=1e-5)


class _Evil:
    def __reduce__(self) -> tuple:
        return (print, ("unpickled code ran",))


def test_fsdp_strategy_refuses_a_checkpoint_that_is_not_weights_only(tmp_path: Path) -> None:
    """Lightning's FSDP reads a full checkpoint with a plain unpickler; ours reads it weights-only first."""
    bad = tmp_path / "bad.ckpt"
    torch.save({"state_dict": {}, "payload": _Evil()}, bad, pickle_module=pickle)
    with pytest.raises(ValueError, match="cannot be read safely"):
        FSDPStrategy().load_checkpoint(bad)

"""``mmformer average``: the mean of checkpoints' float weights, integer buffers of the newest, refusal of
checkpoints that do not belong together, and an averaged checkpoint that ``mmformer test`` loads."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch
import yaml

from mmformer import average as avg
from mmformer.cli import command as console
from mmformer.checkpoint import read_checkpoint
from mmformer.cli import main
from mmformer.tasks.checkpoint_fit import WRITER_KEY
from tests.doc_sections import doc_section

ROOT = Path(__file__).resolve().parents[1]
DIGITS = ROOT / "tasks" / "image_classification_digits.yaml"


def _ckpt(path: Path, step: int, seed: int, count: int, task: str = "mmformer.tasks.ClassificationTask",
          shape: tuple[int, ...] = (3, 4), **extra) -> Path:
    """A checkpoint-shaped file: float weights, a half-precision one, an integer counter buffer."""
    g = torch.Generator().manual_seed(seed)
    state = {"w": torch.randn(shape, generator=g), "h": torch.randn(5, generator=g).half(),
             "num_batches_tracked": torch.tensor(count)}
    torch.save({"state_dict": state, "global_step": step, WRITER_KEY: {"class": task, "backbones": {}}, **extra}, path)
    return path


def test_the_writer_key_is_the_tasks_own() -> None:
    assert avg.WRITER_KEY == WRITER_KEY


def test_average_is_the_mean_of_float_weights_and_integer_buffers_come_from_the_newest(tmp_path: Path) -> None:
    paths = [_ckpt(tmp_path / "b.ckpt", 200, 1, 7), _ckpt(tmp_path / "a.ckpt", 100, 0, 3),
             _ckpt(tmp_path / "c.ckpt", 150, 2, 5)]  # the newest (step 200) given first
    out = avg.average_checkpoints(paths)
    states = [read_checkpoint(p)["state_dict"] for p in paths]
    torch.testing.assert_close(out["state_dict"]["w"], torch.stack([s["w"] for s in states]).mean(0))
    torch.testing.assert_close(out["state_dict"]["h"],
                               torch.stack([s["h"].double() for s in states]).mean(0).half())
    assert out["state_dict"]["h"].dtype == torch.float16
    assert out["state_dict"]["num_batches_tracked"].item() == 7  # not averaged: the newest's
    assert out["global_step"] == 200 and out[avg.AVERAGED_KEY] == [str(p) for p in paths]


@pytest.mark.parametrize("change, message", [
    (dict(shape=(3, 5)), r"key 'w' has shape \(3, 4\) in the first checkpoint and \(3, 5\) here"),
    (dict(task="mmformer.tasks.Seq2SeqTask"), r"different tasks: .*a.ckpt is mmformer.tasks.ClassificationTask, "
                                              r".*b.ckpt is mmformer.tasks.Seq2SeqTask"),
    (dict(mmformer_vocab=torch.tensor([9], dtype=torch.uint8)), r"store different vocabularies"),
])
def test_checkpoints_that_do_not_belong_together_are_refused(tmp_path: Path, change: dict, message: str) -> None:
    a = _ckpt(tmp_path / "a.ckpt", 1, 0, 0, mmformer_vocab=torch.tensor([1], dtype=torch.uint8))
    b = _ckpt(tmp_path / "b.ckpt", 2, 1, 0, **{"mmformer_vocab": torch.tensor([1], dtype=torch.uint8), **change})
    with pytest.raises(ValueError, match=message):
        avg.average_checkpoints([a, b])


def test_a_missing_key_is_named_and_the_command_says_it_in_one_line(tmp_path: Path, capsys) -> None:
    a = _ckpt(tmp_path / "a.ckpt", 1, 0, 0)
    ckpt = read_checkpoint(a)
    ckpt["state_dict"]["extra.bias"] = torch.zeros(2)
    torch.save(ckpt, tmp_path / "b.ckpt")
    assert console.main(["average", "--ckpt_paths", str(a), str(tmp_path / "b.ckpt"),
                         "--output", str(tmp_path / "o.ckpt")]) == console.INPUT_ERROR
    err = capsys.readouterr().err
    assert err.startswith("error: cannot average") and "key 'extra.bias' is only in this checkpoint" in err
    assert not (tmp_path / "o.ckpt").exists()


def test_last_n_needs_enough_distinct_steps(tmp_path: Path) -> None:
    _ckpt(tmp_path / "step1.ckpt", 1, 0, 0)
    _ckpt(tmp_path / "last.ckpt", 1, 0, 0)  # a copy of the same step: not a second checkpoint
    with pytest.raises(ValueError, match=r"--last 2: .* has 1 checkpoint\(s\) of distinct steps \(step1.ckpt\)"):
        avg.last_checkpoints(tmp_path, 2)


@pytest.mark.slow
def test_steps_kept_for_averaging_average_into_a_checkpoint_mmformer_test_loads(tmp_path: Path) -> None:
    """The docs' recipe (Choosing checkpoints): a ModelCheckpoint every few steps keeping all, then --last N, then test."""
    recipe = yaml.safe_load(DIGITS.read_text())
    section = doc_section("Choosing checkpoints")
    callbacks = yaml.safe_load(re.findall(r"```yaml\n(.*?)```", section, re.S)[1])["trainer"]["callbacks"]
    assert callbacks[1]["init_args"]["save_top_k"] == -1
    callbacks[1]["init_args"]["every_n_train_steps"] = 2  # the docs', every 2 steps instead of 200
    recipe["trainer"]["callbacks"] = callbacks
    config = tmp_path / "digits.yaml"
    config.write_text(yaml.safe_dump(recipe))
    cli = main(["fit", "--config", str(config), f"--trainer.default_root_dir={tmp_path / 'runs'}",
                "--trainer.max_steps=6", "--trainer.limit_val_batches=1", "--trainer.enable_progress_bar=false"])
    run = Path(cli.trainer.log_dir)
    picked = avg.last_checkpoints(run, 2)
    assert [read_checkpoint(p)["global_step"] for p in picked] == [4, 6]
    out = tmp_path / "avg.ckpt"
    assert console.main(["average", "--last", "2", "--run", str(run), "--output", str(out)]) == 0
    states = [read_checkpoint(p)["state_dict"] for p in picked]
    averaged = read_checkpoint(out)["state_dict"]
    for key, value in averaged.items():
        if value.is_floating_point():
            torch.testing.assert_close(value, (states[0][key] + states[1][key]) / 2)
    tested = main(["test", "--config", str(config), f"--ckpt_path={out}", f"--trainer.default_root_dir={tmp_path / 't'}",
                   "--trainer.limit_test_batches=2", "--trainer.enable_progress_bar=false"])
    assert "test/acc" in tested.trainer.callback_metrics
    model = tested.model.state_dict()
    assert all(torch.equal(model[k], averaged[k]) for k in model)  # the averaged weights were the ones tested

"""Checkpoints written before the models/heads redesign load into today's tasks, through the path
Lightning takes (``on_load_checkpoint`` then a strict ``load_state_dict``), and compute what the old
code computed. The fixtures were written by the old package (tests/fixtures/legacy/make.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import pytest
import torch

from mmformer.backbone import BackboneConfig
from mmformer.tasks.legacy import FORMAT_KEY, FORMAT_VERSION, upgrade_state_dict
from mmformer.tasks import ClassificationTask, ContrastiveTask, DecisionTransformerTask, Seq2SeqTask
from mmformer.tasks.base import TaskModule
from mmformer.tokenizers import ImagePatchTokenizer, TextTokenizer
from mmformer.tokenizers.trajectory import TrajectoryTokenizer
from mmformer.models.config import ClassifierConfig, ContrastiveConfig, DecisionTransformerConfig, Seq2SeqConfig

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "legacy"
DIM, VOCAB = 8, 16


def cfg() -> BackboneConfig:
    return BackboneConfig(dim=DIM, depth=1, num_heads=2, mlp_ratio=1.0)


def classification() -> TaskModule:
    return ClassificationTask(ClassifierConfig(lambda d: ImagePatchTokenizer(d, image_size=8, patch_size=4, in_chans=1), num_classes=3, backbone=cfg(), pool="attention"))


def seq2seq() -> TaskModule:
    return Seq2SeqTask(Seq2SeqConfig(lambda d: TextTokenizer(d, VOCAB, max_len=8), VOCAB, backbone=cfg(), max_target_len=8), ctc_weight=0.5, metrics=["wer"])


def contrastive() -> TaskModule:
    return ContrastiveTask(ContrastiveConfig(lambda d: ImagePatchTokenizer(d, image_size=8, patch_size=4, cls_token=False), lambda d: TextTokenizer(d, vocab_size=VOCAB, max_len=8), cfg(), pool_a="attention", embed_dim=8))


def decision_transformer() -> TaskModule:
    return DecisionTransformerTask(DecisionTransformerConfig(lambda d: TrajectoryTokenizer(d, state_dim=3, act_dim=2, discrete_actions=False, max_timestep=16), cfg(), context=4))


def outputs(name: str, task: Any, inputs: dict) -> dict[str, torch.Tensor]:
    m = task.model
    if name == "classification":
        return {"logits": m(inputs["images"])}
    if name == "seq2seq":
        memory = m.encode(inputs["source"])
        return {"logits": m(inputs["source"], inputs["target_in"]), "ctc_logits": m.ctc_logits(memory)}
    if name == "contrastive":
        out = m(inputs["images"], inputs["ids"])
        return {"image_embeds": out.embeds_a, "text_embeds": out.embeds_b}  # the fixture's names
    return {"actions": m(inputs["traj"])}


BUILDERS: dict[str, Callable[[], TaskModule]] = {"classification": classification, "seq2seq": seq2seq,
                                                 "contrastive": contrastive,
                                                 "decision_transformer": decision_transformer}


@pytest.mark.parametrize("name", sorted(BUILDERS))
def test_pre_redesign_checkpoint_loads_strictly_and_computes_the_same(name: str) -> None:
    ckpt = torch.load(FIXTURES / f"{name}.pt", weights_only=True)
    assert FORMAT_KEY not in ckpt  # written before the redesign
    task = BUILDERS[name]().eval()
    task.on_load_checkpoint(ckpt)  # what Lightning calls first: upgrades the keys in place
    task.load_state_dict(ckpt["state_dict"], strict=True)
    with torch.no_grad():
        got = outputs(name, task, ckpt["inputs"])
    assert set(got) == set(ckpt["outputs"])
    for key, want in ckpt["outputs"].items():
        torch.testing.assert_close(got[key], want, msg=f"{name}: {key}")


def test_new_checkpoints_are_marked_and_not_upgraded_again() -> None:
    task = seq2seq()
    ckpt: dict[str, Any] = {"state_dict": task.state_dict()}
    TaskModule.on_save_checkpoint(task, ckpt)  # the base part (Seq2SeqTask's also stores a vocabulary)
    assert ckpt[FORMAT_KEY] == FORMAT_VERSION
    keys = list(ckpt["state_dict"])
    task.on_load_checkpoint(ckpt)
    assert list(ckpt["state_dict"]) == keys
    task.load_state_dict(ckpt["state_dict"], strict=True)


def test_upgrade_is_pure_and_idempotent() -> None:
    old = {"ctc_head.weight": torch.zeros(1), "model.lm_head.weight": torch.ones(1)}
    new = upgrade_state_dict("Seq2SeqTask", old)
    assert list(new) == ["model.ctc_head.weight", "model.lm_head.weight"] and "ctc_head.weight" in old
    assert upgrade_state_dict("Seq2SeqTask", new) == new
    assert upgrade_state_dict("SomeoneElsesTask", old) == old

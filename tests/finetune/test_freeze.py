"""Freezing by name pattern: frozen parameters leave the optimizer and stay put; bad patterns are named."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from mmformer.finetune.freeze import freeze, match_names
from mmformer.finetune.setup import FineTuneConfig, apply_finetune, frozen_batchnorms
from mmformer.tasks.optim import OptimConfig, build_optimizer
from tests.finetune.helpers import Holder, images


def test_globs_and_regexes_choose_parameters() -> None:
    names = [f"model.backbone.blocks.{i}.mlp.fc1.weight" for i in range(12)] + ["model.head.fc.weight"]
    assert match_names(names, ["model.backbone.blocks.[0-5].*"]) == names[:6]
    assert match_names(names, [r"re:model\.backbone\.blocks\.(1[01])\..*"]) == names[10:12]
    assert match_names(names, ["model.head.*", "*.blocks.0.*"]) == [names[0], names[-1]]


def test_a_pattern_matching_nothing_is_an_error_naming_it() -> None:
    with pytest.raises(ValueError, match=r"pattern 'model.encoder.\*' matches no parameter name"):
        freeze(Holder(), ["model.backbone.*", "model.encoder.*"])
    with pytest.raises(ValueError, match="not a valid regular expression"):
        freeze(Holder(), ["re:model.(backbone"])


def test_frozen_parameters_leave_the_optimizer_and_stay_unchanged_after_steps() -> None:
    torch.manual_seed(0)
    m = Holder()
    summary = apply_finetune(m, FineTuneConfig(freeze=["model.tokenizer.*", "model.backbone.blocks.[01].*"]))
    frozen = {n for n, p in m.named_parameters() if not p.requires_grad}
    assert frozen and all(n.startswith(("model.tokenizer.", "model.backbone.blocks.0.", "model.backbone.blocks.1."))
                          for n in frozen)
    assert summary.frozen == len(frozen)
    assert any(n.startswith("model.backbone.blocks.2.") for n, p in m.named_parameters() if p.requires_grad)
    before = {n: p.detach().clone() for n, p in m.named_parameters()}
    opt = build_optimizer(m, OptimConfig(lr=1e-2, warmup_steps=1), total_steps=3)["optimizer"]
    in_opt = {id(p) for g in opt.param_groups for p in g["params"]}
    assert all((id(p) in in_opt) == p.requires_grad for p in m.parameters())
    x, y = images(8), torch.arange(8) % 5
    for _ in range(3):
        opt.zero_grad()
        F.cross_entropy(m(x), y).backward()
        opt.step()
    for n, p in m.named_parameters():
        assert torch.equal(p, before[n]) == (n in frozen), n


def test_batchnorms_with_all_parameters_frozen_are_found() -> None:
    m = Holder()
    assert frozen_batchnorms(m) == []
    freeze(m, ["model.tokenizer.*"])
    found = frozen_batchnorms(m)
    assert found and all(isinstance(b, torch.nn.BatchNorm2d) for b in found)
    assert set(map(id, found)) == {id(b) for b in m.model.tokenizer.modules() if isinstance(b, torch.nn.BatchNorm2d)}


def test_freezing_everything_is_an_error_at_optimizer_time() -> None:
    m = Holder()
    freeze(m, ["*"])
    with pytest.raises(ValueError, match="no trainable parameter"):
        build_optimizer(m, OptimConfig(), total_steps=10)

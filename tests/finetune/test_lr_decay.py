"""Layer-wise lr decay: each parameter's group lr is lr · decay^(L+1-layer), weight-decay groups unchanged."""

from __future__ import annotations

import pytest
from torch import nn

from mmformer.backbone import BackboneConfig, Decoder, Encoder
from mmformer.finetune.lr_decay import layer_ids
from mmformer.tasks.optim import OptimConfig, build_optimizer, param_groups
from tests.finetune.helpers import Holder


def _expected_layer(name: str, depth: int) -> int:
    if name.startswith("model.tokenizer."):
        return 0
    if name.startswith("model.backbone.blocks."):
        return int(name.split(".")[3]) + 1
    return depth + 1  # final norm, head


def test_group_lrs_follow_the_formula_and_weight_decay_stays_on_matrices_only() -> None:
    m, lr, decay, depth = Holder(depth=3), 1e-3, 0.75, 3
    opt = build_optimizer(m, OptimConfig(lr=lr, weight_decay=0.05, layer_decay=decay), total_steps=100)["optimizer"]
    group_of = {id(p): g for g in opt.param_groups for p in g["params"]}
    names = dict(m.named_parameters())
    assert len(group_of) == len(names)
    seen = set()
    for name, p in names.items():
        g = group_of[id(p)]
        layer = _expected_layer(name, depth)
        seen.add(layer)
        assert g["initial_lr"] == pytest.approx(lr * decay ** (depth + 1 - layer)), name
        assert g["weight_decay"] == (0.05 if p.dim() >= 2 else 0.0), name
    assert seen == {0, 1, 2, 3, 4}
    opt.step(), opt.zero_grad()  # the schedule scales every group alike: ratios stay
    ratios = {g["lr"] / g["initial_lr"] for g in opt.param_groups}
    assert len({round(r, 12) for r in ratios}) == 1


def test_without_layer_decay_the_groups_are_the_two_weight_decay_groups() -> None:
    m = Holder()
    groups = param_groups(m, 0.05)
    assert [g["weight_decay"] for g in groups] == [0.05, 0.0] and all("lr" not in g for g in groups)
    assert sum(len(g["params"]) for g in groups) == len(list(m.parameters()))


def test_encoder_and_decoder_blocks_are_numbered_per_stack() -> None:
    class EncDec(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.encoder = Encoder(BackboneConfig(dim=32, depth=2, num_heads=2))
            self.decoder = Decoder(BackboneConfig(dim=32, depth=4, num_heads=2))
            self.out = nn.Linear(32, 7)

    ids, depth = layer_ids(EncDec())
    assert depth == 4
    assert ids["encoder.blocks.1.mlp.fc1.weight"] == 2 and ids["decoder.blocks.3.mlp.fc1.weight"] == 4
    assert ids["out.weight"] == ids["encoder.norm.weight"] == 5


def test_layer_decay_needs_a_backbone_and_a_sane_factor() -> None:
    with pytest.raises(ValueError, match="needs a backbone stack"):
        param_groups(nn.Linear(3, 3), 0.0, layer_decay=0.75)
    with pytest.raises(ValueError, match=r"layer_decay must be in \(0, 1\]"):
        param_groups(Holder(), 0.0, layer_decay=1.5)

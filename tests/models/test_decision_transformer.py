"""DecisionTransformer as a plain model: masked action loss, causality, squashed continuous actions."""

from __future__ import annotations

import torch

from mmformer.backbone import BackboneConfig, Encoder
from mmformer.losses import action_loss
from mmformer.models import DecisionTransformer
from mmformer.tokenizers.trajectory import TrajectoryTokenizer


def _loss(m: DecisionTransformer, traj: dict[str, torch.Tensor]) -> torch.Tensor:
    out = m(traj)
    return action_loss(out, m.action_targets(traj, out.dtype), traj["mask"], m.discrete)


def _model(discrete: bool = True, context: int = 4) -> DecisionTransformer:
    torch.manual_seed(0)
    tok = TrajectoryTokenizer(32, state_dim=4 if discrete else 3, act_dim=2 if discrete else 1,
                              discrete_actions=discrete)
    return DecisionTransformer(tok, Encoder(BackboneConfig(dim=32, depth=2, num_heads=2, causal=True)), context).eval()


def test_padding_does_not_change_the_loss() -> None:
    for discrete in (True, False):
        m = _model(discrete)
        x, padded = m.tokenizer.dummy_inputs(4), m.tokenizer.dummy_inputs(4, pad=3)
        assert torch.allclose(_loss(m, x), _loss(m, padded), atol=1e-6)


def test_action_prediction_sees_only_the_past_and_the_current_state() -> None:
    m = _model()
    x = m.tokenizer.dummy_inputs(1)
    base = m(x)  # (1, K, 2)
    y = {k: v.clone() for k, v in x.items()}
    y["actions"][0, 1] = 1 - y["actions"][0, 1]  # the action taken at step 1 ...
    out = m(y)
    assert torch.allclose(out[0, :2], base[0, :2], atol=1e-6)  # ... is not visible when predicting it
    assert not torch.allclose(out[0, 2:], base[0, 2:], atol=1e-6)  # ... but is afterwards
    y["states"][0, 2] += 1.0
    assert not torch.allclose(m(y)[0, 2], out[0, 2], atol=1e-6)


def test_continuous_actions_are_squashed_into_the_bounds() -> None:
    m = _model(discrete=False)
    m.action_low.fill_(-2.0)
    m.action_high.fill_(2.0)
    x = m.tokenizer.dummy_inputs(2)
    x["states"] = x["states"] * 1e3
    act = m.act(x)
    assert act.shape == (2, 1) and bool((act.abs() <= 2.0).all())

"""The trajectory tokenizer: contract, (R, s, a) interleaving, state normalization buffers, input errors."""

from __future__ import annotations

import pytest
import torch

from mmformer.testing import check_tokenizer
from mmformer.tokenizers.trajectory import TrajectoryTokenizer


@pytest.mark.parametrize("discrete", [True, False], ids=["discrete", "continuous"])
def test_meets_the_tokenizer_contract(discrete: bool) -> None:
    tok = TrajectoryTokenizer(32, state_dim=3, act_dim=2, discrete_actions=discrete)
    out = check_tokenizer(tok)
    assert out.tokens.shape == (2, 12, 32)
    assert out.mask.sum(1).tolist() == [12, 6]  # 4 and 2 real timesteps, three tokens each


def test_tokens_interleave_return_state_action_per_timestep() -> None:
    torch.manual_seed(0)
    tok = TrajectoryTokenizer(16, state_dim=3, act_dim=4).eval()
    x = tok.dummy_inputs(batch_size=1)
    base = tok(x).tokens
    for key, offset in (("returns_to_go", 0), ("states", 1), ("actions", 2)):
        y = {k: v.clone() for k, v in x.items()}
        y[key][0, 2] = (y[key][0, 2] + 1) % 4 if key == "actions" else y[key][0, 2] + 1.0
        changed = (tok(y).tokens - base).abs().sum(-1)[0] > 1e-6  # (3K,)
        assert changed.nonzero().flatten().tolist() == [3 * 2 + offset], key


def test_state_statistics_are_buffers_that_normalize_states() -> None:
    tok = TrajectoryTokenizer(16, state_dim=3, act_dim=2).eval()
    x = tok.dummy_inputs()
    mean, std = torch.tensor([1.0, -2.0, 0.5]), torch.tensor([2.0, 0.5, 3.0])
    ref = tok({**x, "states": (x["states"] - mean) / std}).tokens
    tok.set_state_stats(mean, std)
    assert torch.allclose(tok(x).tokens, ref, atol=1e-5)
    state = tok.state_dict()
    assert torch.equal(state["state_mean"], mean) and torch.equal(state["state_std"], std)


def test_bad_inputs_name_the_problem() -> None:
    tok = TrajectoryTokenizer(16, state_dim=3, act_dim=2, discrete_actions=False)
    x = tok.dummy_inputs()
    with pytest.raises(ValueError, match="lacks \\['timesteps'\\]"):
        tok({k: v for k, v in x.items() if k != "timesteps"})
    with pytest.raises(ValueError, match="state_dim"):
        tok({**x, "states": x["states"][..., :2]})
    with pytest.raises(ValueError, match="continuous actions"):
        tok({**x, "actions": x["actions"][..., 0]})
    with pytest.raises(ValueError, match="state_dim"):
        tok.set_state_stats(torch.zeros(4), torch.ones(4))

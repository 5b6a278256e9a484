"""The registry lists tokenizers (decorator and entry points); the generic contract runs over all of them."""

from __future__ import annotations

import inspect
from importlib.metadata import EntryPoint

import pytest
import torch

import mmformer.tokenizers.base as base
from mmformer.testing import check_tokenizer
from mmformer.tokenizers import ModalityTokenizer, TokenBatch, list_tokenizers, register_tokenizer
from tests.tokenizers.test_plugin import SensorTokenizer  # noqa: F401  (registers "toy_sensor")


# sizes a task takes from its data (mmformer.models.data_fields); the contract runs at these
DATA_SIZES = {"vocab_size": 64, "state_dim": 4, "act_dim": 2}


@pytest.mark.parametrize("name", sorted(list_tokenizers()))
def test_every_registered_tokenizer_meets_the_contract(name: str) -> None:
    cls = list_tokenizers()[name]
    params = inspect.signature(cls).parameters
    check_tokenizer(cls(dim=32, **{k: v for k, v in DATA_SIZES.items() if k in params}))


def test_decorator_registers_and_rejects_name_clashes() -> None:
    assert list_tokenizers()["toy_sensor"] is SensorTokenizer

    with pytest.raises(ValueError, match="already registered"):
        @register_tokenizer("toy_sensor")
        class Other(SensorTokenizer):
            pass

    with pytest.raises(TypeError, match="not a ModalityTokenizer"):
        register_tokenizer("x")(torch.nn.Linear)


def test_entry_point_group_is_discovered(monkeypatch: pytest.MonkeyPatch) -> None:
    ep = EntryPoint("ext_sensor", "tests.tokenizers.test_plugin:SensorTokenizer", base.ENTRY_POINT_GROUP)
    monkeypatch.setattr(base, "entry_points", lambda group: [ep] if group == base.ENTRY_POINT_GROUP else [])
    assert list_tokenizers()["ext_sensor"] is SensorTokenizer
    assert "ext_sensor" not in list_tokenizers(include_entry_points=False)


def test_entry_point_that_is_not_a_tokenizer_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    ep = EntryPoint("bad", "torch.nn:Linear", base.ENTRY_POINT_GROUP)
    monkeypatch.setattr(base, "entry_points", lambda group: [ep])
    with pytest.raises(TypeError, match="bad"):
        list_tokenizers()


def test_token_batch_validates_its_fields() -> None:
    x = torch.randn(2, 5, 8)
    with pytest.raises(ValueError, match=r"\(2, 5\)"):
        TokenBatch(x, torch.ones(2, 4, dtype=torch.bool))
    with pytest.raises(ValueError, match="bool"):
        TokenBatch(x, torch.ones(2, 5))
    with pytest.raises(ValueError, match="float"):
        TokenBatch(torch.ones(2, 5, 8, dtype=torch.long))
    with pytest.raises(ValueError, match="positions"):
        TokenBatch(x, positions=torch.arange(4))
    with pytest.raises(ValueError, match="grid"):
        TokenBatch(x, grid=(2, 3))
    tb = TokenBatch(x, positions=torch.arange(5), grid=(2, 2), num_prefix_tokens=1)
    assert tb.real_mask().all() and tb.to(torch.float64).tokens.dtype == torch.float64


def test_tokenizer_without_dummy_inputs_says_how_to_check_it() -> None:
    class Bare(ModalityTokenizer):
        def forward(self, inputs: torch.Tensor) -> TokenBatch:
            return TokenBatch(inputs)

    with pytest.raises(NotImplementedError, match="pass inputs"):
        check_tokenizer(Bare(4))
    x = torch.randn(2, 3, 4)
    assert torch.equal(check_tokenizer(Bare(4), x).tokens, x)
    with pytest.raises(AssertionError, match="width 4, tokenizer.dim is 5"):
        check_tokenizer(Bare(5), x)
    with pytest.raises(ValueError, match="positive"):
        Bare(0)

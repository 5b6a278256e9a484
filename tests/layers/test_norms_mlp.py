"""Norms by name and MLPs: construction, math and errors."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from mmformer.layers.mlp import Mlp, SwiGLU, make_mlp
from mmformer.layers.norms import make_norm


@pytest.mark.parametrize("name,cls", [("layernorm", nn.LayerNorm), ("rmsnorm", nn.RMSNorm)])
@pytest.mark.parametrize("eps", [1e-6, 1e-5])
def test_norm_by_name(name, cls, eps):
    norm = make_norm(name, 16, eps=eps)
    assert type(norm) is cls and norm.eps == eps
    assert tuple(norm.normalized_shape) == (16,)


def test_norm_math():
    torch.manual_seed(0)
    x = torch.randn(2, 3, 16) * 3 + 1
    ln = make_norm("layernorm", 16)
    out = ln(x)
    torch.testing.assert_close(out.mean(-1), torch.zeros(2, 3), atol=1e-5, rtol=0)
    torch.testing.assert_close(out.var(-1, unbiased=False), torch.ones(2, 3), atol=1e-4, rtol=0)
    rms = make_norm("rmsnorm", 16, eps=1e-6)
    ref = x / torch.sqrt(x.pow(2).mean(-1, keepdim=True) + 1e-6)
    torch.testing.assert_close(rms(x), ref, atol=1e-5, rtol=1e-5)


def test_norm_by_dotted_path_and_callable():
    assert type(make_norm("torch.nn.LayerNorm", 8)) is nn.LayerNorm
    made = make_norm(lambda d: nn.GroupNorm(1, d), 8)
    assert isinstance(made, nn.GroupNorm) and made.num_channels == 8


def test_unknown_norm_name():
    with pytest.raises(ValueError, match=r"unknown norm 'batchnorm'.*layernorm.*rmsnorm"):
        make_norm("batchnorm", 8)


def test_unimportable_norm_path():
    with pytest.raises(ValueError, match="cannot import norm 'torch.nn.NoSuchNorm'"):
        make_norm("torch.nn.NoSuchNorm", 8)
    with pytest.raises(ValueError, match="cannot import norm"):
        make_norm("no_such_package_xyz.Norm", 8)


@pytest.mark.parametrize("cls", [Mlp, SwiGLU])
@pytest.mark.parametrize("shape", [(2, 5, 16), (7, 16)])
def test_mlp_shapes(cls, shape):
    torch.manual_seed(0)
    mlp = cls(16, 40)
    assert mlp(torch.randn(*shape)).shape == shape
    assert mlp.fc2.in_features == 40 and mlp.fc2.out_features == 16


def test_mlp_math_and_timm_names():
    torch.manual_seed(0)
    mlp = Mlp(16, 32).eval()
    assert set(dict(mlp.named_parameters())) == {"fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias"}
    x = torch.randn(2, 3, 16)
    ref = F.linear(F.gelu(F.linear(x, mlp.fc1.weight, mlp.fc1.bias)), mlp.fc2.weight, mlp.fc2.bias)
    torch.testing.assert_close(mlp(x), ref, atol=1e-6, rtol=0)


def test_swiglu_math():
    torch.manual_seed(0)
    mlp = SwiGLU(16, 24).eval()
    assert mlp.fc1.out_features == 48
    x = torch.randn(2, 3, 16)
    h = F.linear(x, mlp.fc1.weight, mlp.fc1.bias)
    gate, value = h[..., :24], h[..., 24:]
    ref = F.linear(F.silu(gate) * value, mlp.fc2.weight, mlp.fc2.bias)
    torch.testing.assert_close(mlp(x), ref, atol=1e-6, rtol=0)


@pytest.mark.parametrize("bias", [True, False])
def test_mlp_bias_flag(bias):
    for cls in (Mlp, SwiGLU):
        m = cls(8, 16, bias=bias)
        assert (m.fc1.bias is not None) == bias and (m.fc2.bias is not None) == bias


@pytest.mark.parametrize("name,cls", [("gelu", Mlp), ("swiglu", SwiGLU), ("mmformer.layers.mlp.SwiGLU", SwiGLU)])
def test_make_mlp(name, cls):
    m = make_mlp(name, 8, 12, bias=False, drop=0.1)
    assert type(m) is cls and m.fc2.in_features == 12 and m.fc1.bias is None and m.drop.p == 0.1


def test_make_mlp_unknown():
    with pytest.raises(ValueError, match=r"unknown mlp 'relu'.*gelu.*swiglu"):
        make_mlp("relu", 8, 16)


@pytest.mark.parametrize("cls", [Mlp, SwiGLU])
def test_mlp_dropout_only_in_training(cls):
    torch.manual_seed(0)
    m = cls(8, 16, drop=0.5)
    x = torch.randn(4, 8)
    m.eval()
    torch.testing.assert_close(m(x), m(x), atol=0, rtol=0)
    m.train()
    assert not torch.allclose(m(x), m(x))


@pytest.mark.parametrize("name,fn", [
    ("gelu", F.gelu), ("mlp_gelu_tanh", lambda x: F.gelu(x, approximate="tanh")),
    ("mlp_quick_gelu", lambda x: x * torch.sigmoid(1.702 * x)), ("mlp_silu", F.silu), ("mlp_relu", F.relu)])
def test_named_activation_mlps_compute_their_activation(name, fn):
    torch.manual_seed(0)
    mlp = make_mlp(name, 8, 16)
    x = torch.randn(2, 3, 8)
    torch.testing.assert_close(mlp(x), mlp.fc2(fn(mlp.fc1(x))))
    assert sorted(mlp.state_dict()) == sorted(Mlp(8, 16).state_dict())  # same tensors, so checkpoints convert


def test_unknown_activation_is_named():
    with pytest.raises(ValueError, match="unknown activation 'mish'"):
        Mlp(8, 16, act="mish")

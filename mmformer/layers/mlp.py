"""Position-wise feed-forward layers: GELU MLP and SwiGLU."""

from __future__ import annotations

from typing import Callable, Union

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mmformer.layers.norms import resolve

# An MLP is built as ``factory(dim, hidden_dim, bias=..., drop=...)``.
MlpFactory = Callable[..., nn.Module]
MlpSpec = Union[str, MlpFactory]


class QuickGELU(nn.Module):
    """``x * sigmoid(1.702 x)``: the GELU approximation of OpenAI's CLIP."""

    def forward(self, x: Tensor) -> Tensor:
        return x * torch.sigmoid(1.702 * x)


# Activation names as the checkpoints people fine-tune spell them (HF ``hidden_act``).
ACTIVATIONS: dict[str, Callable[[], nn.Module]] = {
    "gelu": nn.GELU,  # exact (erf) GELU: ViT, BERT, Whisper
    "gelu_tanh": lambda: nn.GELU(approximate="tanh"),  # GPT-2's gelu_new
    "quick_gelu": QuickGELU,  # OpenAI CLIP
    "silu": nn.SiLU,  # Marian's swish
    "relu": nn.ReLU,
}


class Mlp(nn.Module):
    """Linear → activation → Linear (ViT / original Transformer). Parameter names match timm's ``Mlp``.

    ``act`` names the activation (:data:`ACTIVATIONS`; default exact GELU).
    """

    def __init__(self, dim: int, hidden_dim: int, bias: bool = True, drop: float = 0.0, act: str = "gelu") -> None:
        super().__init__()
        if act not in ACTIVATIONS:
            raise ValueError(f"unknown activation {act!r}; choose one of {sorted(ACTIVATIONS)}")
        self.fc1 = nn.Linear(dim, hidden_dim, bias=bias)
        self.act = ACTIVATIONS[act]()
        self.fc2 = nn.Linear(hidden_dim, dim, bias=bias)
        self.drop = nn.Dropout(drop) if drop > 0 else nn.Identity()  # a no-op module is cheaper to call

    def forward(self, x: Tensor) -> Tensor:  # (B, N, D) → (B, N, D)
        return self.drop(self.fc2(self.drop(self.act(self.fc1(x)))))


class SwiGLU(nn.Module):
    """SiLU-gated MLP (Shazeer 2020; Llama). Gate and value share one fused input projection.

    ``hidden_dim`` is the gated width; Llama uses about ``8/3 * dim`` to match a 4x GELU MLP's parameters.
    """

    def __init__(self, dim: int, hidden_dim: int, bias: bool = True, drop: float = 0.0) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, 2 * hidden_dim, bias=bias)  # [gate | value]
        self.fc2 = nn.Linear(hidden_dim, dim, bias=bias)
        self.drop = nn.Dropout(drop) if drop > 0 else nn.Identity()  # a no-op module is cheaper to call

    def forward(self, x: Tensor) -> Tensor:  # (B, N, D) → (B, N, D)
        gate, value = self.fc1(x).chunk(2, dim=-1)
        return self.drop(self.fc2(self.drop(F.silu(gate) * value)))


def _mlp_with(act: str) -> MlpFactory:
    return lambda dim, hidden_dim, bias=True, drop=0.0: Mlp(dim, hidden_dim, bias, drop, act)


# "gelu" is the plain Mlp; the other names are the same Mlp with another activation.
MLPS: dict[str, MlpFactory] = {"gelu": Mlp, "swiglu": SwiGLU,
                               **{f"mlp_{a}": _mlp_with(a) for a in ACTIVATIONS if a != "gelu"}}


def make_mlp(spec: MlpSpec, dim: int, hidden_dim: int, bias: bool = True, drop: float = 0.0) -> nn.Module:
    """Builds an MLP from a name (``gelu``, ``swiglu``, ``mlp_gelu_tanh``, ``mlp_quick_gelu``, ``mlp_silu``,
    ``mlp_relu``), a dotted import path or a callable."""
    return resolve(spec, MLPS, "mlp")(dim, hidden_dim, bias=bias, drop=drop)

"""Position-wise feed-forward layers: GELU MLP and SwiGLU."""

from __future__ import annotations

from typing import Callable, Union

import torch.nn.functional as F
from torch import Tensor, nn

from mmformer.layers.norms import resolve

# An MLP is built as ``factory(dim, hidden_dim, bias=..., drop=...)``.
MlpFactory = Callable[..., nn.Module]
MlpSpec = Union[str, MlpFactory]


class Mlp(nn.Module):
    """Linear → GELU → Linear (ViT / original Transformer). Parameter names match timm's ``Mlp``."""

    def __init__(self, dim: int, hidden_dim: int, bias: bool = True, drop: float = 0.0) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden_dim, bias=bias)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden_dim, dim, bias=bias)
        self.drop = nn.Dropout(drop)

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
        self.drop = nn.Dropout(drop)

    def forward(self, x: Tensor) -> Tensor:  # (B, N, D) → (B, N, D)
        gate, value = self.fc1(x).chunk(2, dim=-1)
        return self.drop(self.fc2(self.drop(F.silu(gate) * value)))


MLPS: dict[str, type[nn.Module]] = {"gelu": Mlp, "swiglu": SwiGLU}


def make_mlp(spec: MlpSpec, dim: int, hidden_dim: int, bias: bool = True, drop: float = 0.0) -> nn.Module:
    """Builds an MLP from a name (``gelu``, ``swiglu``), a dotted import path or a callable."""
    return resolve(spec, MLPS, "mlp")(dim, hidden_dim, bias=bias, drop=drop)

"""Positional schemes: learned absolute, sinusoidal 1D, 2D sin-cos for patch grids, RoPE."""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor, nn


def _check_length(length: int, max_len: int, what: str) -> None:
    if length > max_len:
        raise ValueError(
            f"sequence of {length} positions is longer than the {what} table ({max_len} positions); "
            f"raise max_len or truncate the input"
        )


class LearnedPositions(nn.Module):
    """A learned embedding per absolute position, added to the tokens.

    Args:
        max_len: number of positions in the table.
        dim: embedding width D.
    """

    def __init__(self, max_len: int, dim: int) -> None:
        super().__init__()
        self.max_len = max_len
        self.weight = nn.Parameter(torch.zeros(max_len, dim))
        nn.init.trunc_normal_(self.weight, std=0.02)

    def forward(self, x: Tensor, offset: int | Tensor = 0) -> Tensor:
        """x: ``(B, N, D)`` → x plus the embeddings of positions ``offset .. offset+N-1``.

        A 0-d tensor ``offset`` (a static KV cache's position) is gathered without a host sync or a
        shape that depends on it, so a compiled decoding step never recompiles."""
        if isinstance(offset, Tensor):
            return x + _rows(self.weight, offset, x.shape[1]).to(x.dtype)
        _check_length(offset + x.shape[1], self.max_len, "learned position")
        return x + self.weight[offset : offset + x.shape[1]].to(x.dtype)


def _rows(table: Tensor, offset: Tensor, n: int) -> Tensor:
    """Rows ``offset .. offset+n-1`` of ``table`` for a 0-d tensor offset (no bounds check: no sync)."""
    return table.index_select(0, offset + torch.arange(n, device=table.device))


def sinusoidal_1d(positions: Tensor, dim: int, base: float = 10000.0) -> Tensor:
    """The original Transformer's encoding: ``(...,)`` positions → ``(..., dim)`` [sin | cos]."""
    if dim % 2:
        raise ValueError(f"sinusoidal positions need an even dim, got {dim}")
    inv = torch.exp(torch.arange(0, dim, 2, device=positions.device, dtype=torch.float32) * (-math.log(base) / dim))
    angles = positions.float()[..., None] * inv  # (..., dim/2)
    return torch.cat([angles.sin(), angles.cos()], dim=-1)


class SinusoidalPositions(nn.Module):
    """Fixed sinusoidal encodings added to the tokens; no parameters.

    Args:
        dim: embedding width D (even).
        max_len: longest sequence accepted (None: any length; the table is computed on demand).
        base: wavelength base (10000 in the paper).
    """

    def __init__(self, dim: int, max_len: int | None = None, base: float = 10000.0) -> None:
        super().__init__()
        if dim % 2:
            raise ValueError(f"sinusoidal positions need an even dim, got {dim}")
        self.dim, self.max_len, self.base = dim, max_len, base
        # With a known max_len the table is computed once (not saved: it is a pure function of
        # the settings), so a decoding step slices it instead of recomputing sin/cos.
        table = sinusoidal_1d(torch.arange(max_len), dim, base) if max_len is not None else None
        self.register_buffer("table", table, persistent=False)

    def forward(self, x: Tensor, offset: int | Tensor = 0) -> Tensor:
        """x: ``(B, N, D)`` → x plus the encodings of positions ``offset .. offset+N-1`` (a 0-d tensor
        offset as in :class:`LearnedPositions`)."""
        if isinstance(offset, Tensor):
            pos = offset + torch.arange(x.shape[1], device=x.device)
            table = self.table
            rows = table.index_select(0, pos) if table is not None else sinusoidal_1d(pos, self.dim, self.base)
            return x + rows.to(x.dtype)
        if self.table is not None:
            _check_length(offset + x.shape[1], self.max_len, "sinusoidal position")  # type: ignore[arg-type]
            return x + self.table[offset : offset + x.shape[1]].to(x.dtype)
        pos = torch.arange(offset, offset + x.shape[1], device=x.device)
        return x + sinusoidal_1d(pos, self.dim, self.base).to(x.dtype)


def sincos_2d(grid_h: int, grid_w: int, dim: int, temperature: float = 10000.0) -> Tensor:
    """2D sin-cos table for a patch grid (MAE / simple-ViT): ``(grid_h * grid_w, dim)``, row-major.

    The first half of the channels encodes the row (y), the second half the column (x).
    """
    if dim % 4:
        raise ValueError(f"2D sin-cos positions need dim divisible by 4, got {dim}")
    y, x = torch.meshgrid(torch.arange(grid_h), torch.arange(grid_w), indexing="ij")
    half = dim // 2
    return torch.cat([sinusoidal_1d(y.flatten(), half, temperature), sinusoidal_1d(x.flatten(), half, temperature)], -1)


def resize_2d(
    pos: Tensor, old_grid: tuple[int, int], new_grid: tuple[int, int], num_prefix_tokens: int = 0
) -> Tensor:
    """Resamples a learned 2D table to another patch grid (bicubic, as timm does for ViTs).

    Args:
        pos: ``(N, D)`` or ``(1, N, D)`` with ``N = num_prefix_tokens + H*W``.
        old_grid, new_grid: ``(H, W)`` of the table and of the wanted grid.
        num_prefix_tokens: leading non-grid entries (CLS) kept as they are.
    """
    from timm.layers import resample_abs_pos_embed

    squeeze = pos.dim() == 2
    expected = num_prefix_tokens + old_grid[0] * old_grid[1]
    if pos.shape[-2] != expected:
        raise ValueError(
            f"position table has {pos.shape[-2]} entries but grid {old_grid} plus "
            f"{num_prefix_tokens} prefix tokens needs {expected}"
        )
    out = resample_abs_pos_embed(
        pos[None] if squeeze else pos, list(new_grid), list(old_grid), num_prefix_tokens=num_prefix_tokens
    )
    return out[0] if squeeze else out


class RotaryEmbedding(nn.Module):
    """Rotary position embedding (RoFormer), rotate-half convention as in GPT-NeoX/Llama.

    Applied to queries and keys inside attention, so scores depend only on relative offsets.

    Args:
        head_dim: per-head width hd (even); all of it is rotated.
        base: frequency base (10000 in the paper).
    """

    def __init__(self, head_dim: int, base: float = 10000.0) -> None:
        super().__init__()
        if head_dim % 2:
            raise ValueError(f"RoPE needs an even head dim, got {head_dim}")
        self.head_dim, self.base = head_dim, base
        # Out of state_dict: it is a function of (head_dim, base), not a weight.
        self.register_buffer("inv_freq", self._inv_freq(torch.device("cpu")), persistent=False)

    def _inv_freq(self, device: torch.device) -> Tensor:
        return self.base ** (-torch.arange(0, self.head_dim, 2, dtype=torch.float32, device=device) / self.head_dim)

    def _apply(self, fn: Any, recurse: bool = True) -> RotaryEmbedding:
        # ``module.to(torch.bfloat16)`` / ``.half()`` cast floating buffers; the frequencies stay
        # float32 (recomputed, not cast back: bf16 keeps 8 mantissa bits, so angles of positions in
        # the hundreds would be off by whole radians). Moves between devices still apply.
        super()._apply(fn, recurse)
        if self.inv_freq.dtype != torch.float32:
            self.inv_freq = self._inv_freq(self.inv_freq.device)
        return self

    def forward(self, positions: Tensor) -> tuple[Tensor, Tensor]:
        """positions: ``(T,)`` or ``(B, T)`` → cos, sin broadcastable to ``(B, H, T, hd)``."""
        freqs = positions.float()[..., None] * self.inv_freq.float()  # (..., T, hd/2)
        emb = torch.cat([freqs, freqs], dim=-1)  # (..., T, hd)
        if emb.dim() == 3:  # (B, T, hd) → (B, 1, T, hd)
            emb = emb[:, None]
        return emb.cos(), emb.sin()


def apply_rotary(x: Tensor, cos: Tensor, sin: Tensor) -> Tensor:
    """Rotates ``x: (B, H, T, hd)`` by the angles whose cos/sin come from :class:`RotaryEmbedding`."""
    x1, x2 = x.chunk(2, dim=-1)
    rotated = torch.cat([-x2, x1], dim=-1)
    return (x * cos + rotated * sin).to(x.dtype)

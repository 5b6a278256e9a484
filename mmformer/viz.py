"""Pictures people look at: confusion matrices and attention maps over images (matplotlib, headless)."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import matplotlib

matplotlib.use("Agg")  # headless: files only, never a window
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from torch import Tensor  # noqa: E402


def attention_rollout(attentions: Sequence[Tensor], residual: float = 0.5) -> Tensor:
    """Attention rollout (Abnar & Zuidema 2020): how much each output token draws on each input token.

    Args:
        attentions: per layer ``(B, H, N, N)`` weights, first layer first.
        residual: weight of the identity (the residual path) mixed into each layer's attention.
    Returns:
        ``(B, N, N)`` rollout, rows summing to 1.
    """
    rollout = None
    for a in attentions:
        a = a.float().mean(dim=1)  # average heads: (B, N, N)
        a = residual * torch.eye(a.shape[-1], device=a.device) + (1 - residual) * a
        a = a / a.sum(dim=-1, keepdim=True)
        rollout = a if rollout is None else a @ rollout
    if rollout is None:
        raise ValueError("attention_rollout needs at least one layer of attention weights")
    return rollout


def patch_saliency(attentions: Sequence[Tensor], grid: tuple[int, int], num_prefix_tokens: int) -> Tensor:
    """Per-image saliency over the patch grid ``(B, gh, gw)``, in [0, 1].

    With a CLS token, its rollout row; otherwise the rollout averaged over all output tokens.
    """
    r = attention_rollout(attentions)
    row = r[:, 0] if num_prefix_tokens else r.mean(dim=1)  # (B, N)
    sal = row[:, num_prefix_tokens:].reshape(-1, *grid)
    lo = sal.flatten(1).min(dim=1).values[:, None, None]
    hi = sal.flatten(1).max(dim=1).values[:, None, None]
    return (sal - lo) / (hi - lo).clamp_min(1e-12)


def plot_attention_overlays(
    images: Tensor, saliency: Tensor, titles: Sequence[str], path: str | Path
) -> plt.Figure:
    """Images ``(B, C, H, W)`` with saliency ``(B, gh, gw)`` upsampled on top; saved as PNG at ``path``."""
    n = images.shape[0]
    fig, axes = plt.subplots(2, n, figsize=(1.6 * n, 3.4), squeeze=False)
    heat = F.interpolate(saliency[:, None].float(), size=images.shape[-2:], mode="bilinear", align_corners=False)
    for i in range(n):
        img = images[i].float()
        img = (img - img.min()) / (img.max() - img.min()).clamp_min(1e-12)
        shown = img[0] if img.shape[0] == 1 else img.permute(1, 2, 0)
        for row in range(2):
            axes[row, i].imshow(shown.cpu().numpy(), cmap="gray" if img.shape[0] == 1 else None)
            axes[row, i].axis("off")
        axes[1, i].imshow(heat[i, 0].cpu().numpy(), cmap="jet", alpha=0.5)
        axes[0, i].set_title(titles[i], fontsize=7)
    fig.suptitle("attention rollout", fontsize=9)
    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    return fig


def save_figure(fig: plt.Figure, path: str | Path) -> None:
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120, bbox_inches="tight")


def plot_alignment(weights: Tensor, source: Sequence[str], target: Sequence[str], path: str | Path,
                   title: str = "cross-attention") -> plt.Figure:
    """Heatmap of a decoder's cross-attention: ``weights (T, S)``, target pieces down, source across."""
    t, s = weights.shape
    fig, ax = plt.subplots(figsize=(1.5 + 0.35 * s, 1.0 + 0.3 * t))
    ax.imshow(weights.float().cpu().numpy(), cmap="viridis", aspect="auto", vmin=0)
    ax.set_xticks(range(s), list(source), rotation=90, fontsize=8)
    ax.set_yticks(range(t), list(target), fontsize=8)
    ax.set_xlabel("source")
    ax.set_ylabel("output")
    ax.set_title(title)
    save_figure(fig, path)
    return fig

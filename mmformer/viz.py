"""Pictures people look at (matplotlib, headless): attention maps over images, cross-attention
alignments, similarity matrices, return-vs-target curves; and :func:`log_figure`, which hands a figure
to every logger that draws figures (TensorBoard). No Lightning here: loggers are taken as they come."""

from __future__ import annotations

from pathlib import Path
import textwrap
from typing import Any, Sequence

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


def plot_word_attention(image: Tensor, maps: Tensor, words: Sequence[str], path: str | Path) -> plt.Figure:
    """Where each generated word looks: ``image (C, H, W)`` with one cross-attention map per word
    ``maps (T, gh, gw)`` (over the patch grid) upsampled on top; saved as PNG at ``path``."""
    t = maps.shape[0]
    fig, axes = plt.subplots(1, t + 1, figsize=(1.6 * (t + 1), 1.9), squeeze=False)
    img = image.float()
    img = (img - img.min()) / (img.max() - img.min()).clamp_min(1e-12)
    shown = (img[0] if img.shape[0] == 1 else img.permute(1, 2, 0)).cpu().numpy()
    heat = F.interpolate(maps[:, None].float(), size=image.shape[-2:], mode="bilinear", align_corners=False)
    cmap = "gray" if img.shape[0] == 1 else None
    axes[0, 0].imshow(shown, cmap=cmap)
    axes[0, 0].set_title("input", fontsize=7)
    for i in range(t):
        axes[0, i + 1].imshow(shown, cmap=cmap)
        axes[0, i + 1].imshow(heat[i, 0].cpu().numpy(), cmap="jet", alpha=0.5)
        axes[0, i + 1].set_title(words[i], fontsize=7)
    for ax in axes[0]:
        ax.axis("off")
    fig.suptitle("cross-attention of each generated word (last decoder layer, heads averaged)", fontsize=8)
    fig.tight_layout()
    save_figure(fig, path)
    return fig


def log_figure(loggers: Sequence[Any], tag: str, fig: plt.Figure, step: int = 0) -> None:
    """Adds ``fig`` under ``tag`` to every logger whose ``experiment`` has ``add_figure`` (TensorBoard's)."""
    for logger in loggers:
        experiment = getattr(logger, "experiment", None)
        if hasattr(experiment, "add_figure"):
            experiment.add_figure(tag, fig, global_step=step)


def plot_similarity(sim: Tensor, captions: Sequence[str], path: str | Path,
                    names: tuple[str, str] = ("image", "caption")) -> plt.Figure:
    """Heatmap of caption (rows) against image (columns) cosine similarities ``sim (N, N)``; saved at ``path``.

    ``names`` are the (columns, rows) towers' names in the labels (e.g. ``("audio", "text")``)."""
    n = sim.shape[0]
    fig, ax = plt.subplots(figsize=(5 + 0.55 * n, 1.5 + 0.55 * n))
    im = ax.imshow(sim.float().cpu().numpy(), cmap="viridis")
    ax.set_xticks(range(n), [str(i) for i in range(n)], fontsize=7)
    labels = ["\n".join(textwrap.wrap(f"{c} ({i})", 60)[:3]) for i, c in enumerate(captions)]
    ax.set_yticks(range(n), labels, fontsize=5)
    ax.set_xlabel(names[0])
    ax.set_ylabel(names[1])
    ax.set_title(f"cosine similarity: {names[1]} (rows) vs {names[0]} (columns)", fontsize=8)
    fig.colorbar(im, ax=ax, fraction=0.03)
    save_figure(fig, path)
    return fig


def plot_return_vs_target(targets: Sequence[float], means: Tensor, stds: Tensor, references: dict[str, float],
                          path: str | Path) -> plt.Figure:
    """Achieved mean return (± std, ``(T,)`` each) against the target, with the y = x line and
    horizontal reference returns (e.g. ``{"dataset mean": ..., "dataset best": ...}``); saved at ``path``."""
    order = sorted(range(len(targets)), key=lambda i: targets[i])
    x = [targets[i] for i in order]
    fig, ax = plt.subplots(figsize=(4.5, 4))
    ax.errorbar(x, means[order].tolist(), yerr=stds[order].tolist(), marker="o", capsize=3, label="achieved")
    lo = min(0.0, min(x), float(means.min()))
    hi = max(0.0, max(x), float(means.max()))
    ax.plot([lo, hi], [lo, hi], "k--", lw=0.8, label="target")  # y = x
    for (label, value), style in zip(references.items(), (":", "-.", "--", "-")):
        ax.axhline(float(value), color="gray", ls=style, lw=0.8, label=label)
    ax.set_xlabel("target return")
    ax.set_ylabel("achieved return")
    ax.legend(fontsize=7)
    save_figure(fig, path)
    return fig

"""Losses kept outside the models (open_clip's ``loss.py``): the symmetric InfoNCE of CLIP, exact
over the global batch under data parallelism.

Under DDP each process holds ``b`` of the ``B = world * b`` pairs. :func:`gather_with_grad`
concatenates every rank's embeddings with an autograd-aware all-gather, and every rank computes
the *same* loss over the full ``B x B`` logits. The gather's backward sums each rank's gradient
into the local slice (a ``reduce_scatter``), so a rank's local embeddings receive ``world`` times
``dL/dx``; DDP then averages parameter gradients over the ranks, which divides that factor out
again: parameter gradients equal those of one process on the concatenated batch, and the logit
scale (whose gradient every rank computes in full) is averaged to itself. Dividing the loss by
the world size, or gathering without gradients, is the classic way to get this wrong.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import Tensor


def world_size() -> int:
    """Processes in the default group (1 when torch.distributed is not initialized)."""
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def gather_with_grad(x: Tensor) -> Tensor:
    """Concatenates ``x (b, ...)`` from every rank in rank order → ``(world * b, ...)``, keeping gradients.

    All ranks must pass the same shape (the training loader drops incomplete last batches).
    """
    if world_size() == 1:
        return x
    from torch.distributed.nn.functional import all_gather

    return torch.cat(all_gather(x), dim=0)


class ContrastiveLossOutput(NamedTuple):
    loss: Tensor  # () symmetric InfoNCE over the global batch (identical on every rank)
    logits_per_image: Tensor  # (B, B) scaled cosine similarities, image rows against text columns
    image_to_text_loss: Tensor  # () cross-entropy of the image rows
    text_to_image_loss: Tensor  # () cross-entropy of the text rows


def clip_loss(image_embeds: Tensor, text_embeds: Tensor, logit_scale: Tensor,
              gather: bool = True) -> ContrastiveLossOutput:
    """Symmetric InfoNCE (Radford et al. 2021): pair ``i`` is the positive of row and column ``i``.

    Args:
        image_embeds: ``(b, E)`` L2-normalized embeddings of this rank's first modality.
        text_embeds: ``(b, E)`` L2-normalized embeddings of the paired second modality.
        logit_scale: ``()`` the multiplier of the cosine similarities (exp of the learned
            log-temperature, already clamped).
        gather: under torch.distributed, gather both sides from every rank (with gradients) so the
            loss is over the global batch; False = this rank's pairs only.
    """
    if image_embeds.shape != text_embeds.shape or image_embeds.dim() != 2:
        raise ValueError(f"paired embeddings must both be (B, E); got {tuple(image_embeds.shape)} and "
                         f"{tuple(text_embeds.shape)}")
    if gather:
        image_embeds, text_embeds = gather_with_grad(image_embeds), gather_with_grad(text_embeds)
    logits = logit_scale * image_embeds @ text_embeds.t()  # (B, B)
    target = torch.arange(logits.shape[0], device=logits.device)
    i2t = F.cross_entropy(logits, target)
    t2i = F.cross_entropy(logits.t(), target)
    return ContrastiveLossOutput((i2t + t2i) / 2, logits, i2t, t2i)

"""Every loss, kept outside the models (open_clip's ``loss.py``); the task modules call them.

- :func:`sequence_cross_entropy`: label-smoothed token cross-entropy with pads ignored (seq2seq).
- :func:`soft_target_cross_entropy`: cross-entropy against soft targets (mixup/cutmix labels).
- :func:`ctc_loss`: CTC over frame-wise logits, labels read from bos/eos-framed target rows.
- :func:`action_loss`: the decision transformer's masked action loss (CE or MSE).
- :func:`clip_loss`: the symmetric InfoNCE of CLIP, exact over the global batch under data parallelism
  (optionally with hard negatives weighted up: :func:`hard_negative_cross_entropy`).

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

import math
from typing import NamedTuple, Sequence

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


def hard_negative_cross_entropy(logits: Tensor, cosines: Tensor, beta: float) -> Tensor:
    """InfoNCE of the rows of ``logits (B, B)`` (positives on the diagonal) with each row's negatives
    reweighted by ``exp(beta * cosine)``, normalized to mean 1 (Robinson et al. 2021, "Contrastive Learning
    with Hard Negative Samples", without the debiasing term): the denominator is
    ``e^{l_ii} + (B - 1) * sum_j q_ij e^{l_ij}``, ``q_ij = softmax_j(beta * cos_ij)`` over ``j != i``.
    ``beta = 0`` is the plain cross-entropy. The weights read cosines, not logits, so their sharpness does not
    follow the learned temperature; like the paper's, they are not detached."""
    b = logits.shape[0]
    target = torch.arange(b, device=logits.device)
    if beta == 0.0 or b < 2:
        return F.cross_entropy(logits, target)
    logits, cosines = logits.float(), cosines.float()
    eye = torch.eye(b, dtype=torch.bool, device=logits.device)
    weight = (beta * cosines).masked_fill(eye, float("-inf"))  # (B, B) log-weights of the negatives
    negatives = torch.logsumexp(weight + logits, 1) - torch.logsumexp(weight, 1) + math.log(b - 1)  # (B,)
    positives = logits.diagonal()
    return (torch.logaddexp(positives, negatives) - positives).mean()


def clip_loss(embeds_a: Tensor, embeds_b: Tensor, logit_scale: Tensor,
              gather: bool = True, hard_negative_beta: float = 0.0) -> ContrastiveLossOutput:
    """Symmetric InfoNCE (Radford et al. 2021): pair ``i`` is the positive of row and column ``i``.

    Args:
        embeds_a: ``(b, E)`` L2-normalized embeddings of this rank's first modality.
        embeds_b: ``(b, E)`` L2-normalized embeddings of the paired second modality.
        logit_scale: ``()`` the multiplier of the cosine similarities (exp of the learned
            log-temperature; a clamp applied here would zero its gradient at the cap).
        gather: under torch.distributed, gather both sides from every rank (with gradients) so the
            loss is over the global batch; False = this rank's pairs only.
        hard_negative_beta: > 0 weights each row's negatives by ``exp(beta * cosine)``
            (:func:`hard_negative_cross_entropy`): negatives that already look like the positive, e.g. the
            same background behind another glyph, count more than easy ones. 0 = plain InfoNCE.
    """
    if embeds_a.shape != embeds_b.shape or embeds_a.dim() != 2:
        raise ValueError(f"paired embeddings must both be (B, E); got {tuple(embeds_a.shape)} and "
                         f"{tuple(embeds_b.shape)}")
    if gather:
        embeds_a, embeds_b = gather_with_grad(embeds_a), gather_with_grad(embeds_b)
    cosines = embeds_a @ embeds_b.t()  # (B, B)
    logits = logit_scale * cosines
    i2t = hard_negative_cross_entropy(logits, cosines, hard_negative_beta)
    t2i = hard_negative_cross_entropy(logits.t(), cosines.t(), hard_negative_beta)
    return ContrastiveLossOutput((i2t + t2i) / 2, logits, i2t, t2i)


def sequence_cross_entropy(logits: Tensor, targets: Tensor, label_smoothing: float = 0.0,
                           ignore_index: int = 0) -> Tensor:
    """Mean token cross-entropy of ``logits (B, T, V)`` against ``targets (B, T)``, pads excluded.

    Args:
        logits: next-token scores (any float dtype; the loss is computed in float32).
        targets: ids; positions equal to ``ignore_index`` (the pad id) do not count.
        label_smoothing: mass spread uniformly over the vocabulary (Szegedy et al. 2016).
        ignore_index: the pad id.
    """
    if logits.shape[:-1] != targets.shape:
        raise ValueError(f"logits {tuple(logits.shape)} do not fit targets {tuple(targets.shape)}: expected (B, T, V)"
                         f" and (B, T)")
    return F.cross_entropy(logits.flatten(0, 1).float(), targets.flatten(), ignore_index=ignore_index,
                           label_smoothing=label_smoothing)


def soft_target_cross_entropy(logits: Tensor, targets: Tensor) -> Tensor:
    """Mean over rows of ``-sum(targets * log_softmax(logits))``: ``(B, C)``, ``(B, C)`` → ``()`` (mixup labels)."""
    if logits.shape != targets.shape:
        raise ValueError(f"soft targets {tuple(targets.shape)} must have the logits' shape {tuple(logits.shape)}")
    return torch.sum(-targets * F.log_softmax(logits, dim=-1), dim=-1).mean()


def ctc_loss(logits: Tensor, input_mask: Tensor | None, targets: Tensor, blank: int = 0,
             special_ids: Sequence[int] = ()) -> Tensor:
    """CTC loss (Graves et al. 2006) of frame-wise ``logits (B, S, V)`` against label rows ``targets (B, L)``.

    Args:
        logits: scores per frame (e.g. a :class:`~mmformer.heads.CTCHead`'s); log-softmax in float32.
        input_mask: ``(B, S)`` True = real frame (None = all real).
        targets: ``(B, L)`` ids; the labels of a row are its leading ids other than blank and
            ``special_ids`` (e.g. a decoder's targets ``pieces + eos + pads`` with eos special).
        blank: the blank label (mmformer: the pad id).
        special_ids: ids that are not labels (bos, eos).
    Returns:
        ``()`` mean over the batch of the per-utterance loss divided by its label count (PyTorch's
        ``reduction="mean"``); an utterance with more labels than frames contributes 0, not inf.
    """
    log_probs = logits.float().log_softmax(-1)  # (B, S, V)
    b, s, _ = log_probs.shape
    in_len = input_mask.sum(1) if input_mask is not None else torch.full((b,), s, dtype=torch.long,
                                                                         device=logits.device)
    real = targets != blank
    for special in special_ids:
        real &= targets != special
    return F.ctc_loss(log_probs.transpose(0, 1), targets, in_len, real.sum(1), blank=blank, zero_infinity=True)


def action_loss(predictions: Tensor, actions: Tensor, mask: Tensor, discrete: bool) -> Tensor:
    """A decision transformer's mean action loss over real timesteps.

    Args:
        predictions: ``(B, K, A)`` logits (discrete) or actions squashed into ``[-1, 1]`` (continuous).
        actions: ``(B, K)`` action ids, or ``(B, K, A)`` targets already mapped into ``[-1, 1]``.
        mask: ``(B, K)`` True = a real timestep (segments are right-padded).
        discrete: cross-entropy over ids (True) or mean squared error per step (False).
    """
    if discrete:
        per_step = F.cross_entropy(predictions.flatten(0, 1), actions.flatten().long(), reduction="none")
    else:
        per_step = (predictions - actions.to(predictions.dtype)).pow(2).mean(-1).flatten()
    w = mask.flatten().to(per_step.dtype)
    return (per_step * w).sum() / w.sum().clamp_min(1.0)


__all__ = ["ContrastiveLossOutput", "action_loss", "clip_loss", "ctc_loss", "gather_with_grad",
           "hard_negative_cross_entropy", "sequence_cross_entropy", "soft_target_cross_entropy", "world_size"]

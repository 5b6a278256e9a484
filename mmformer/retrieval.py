"""Evaluation helpers of contrastive models: retrieval recall@k, zero-shot classifiers from prompt
templates, and gathering evaluation embeddings from every rank."""

from __future__ import annotations

from typing import Callable, Sequence

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import Tensor

from mmformer.losses import world_size


def recall_at_k(similarity: Tensor, ks: Sequence[int] = (1, 5, 10)) -> dict[int, Tensor]:
    """Recall@k of queries (rows) whose one relevant item is the column of the same index.

    Args:
        similarity: ``(Q, Q)`` query-by-item scores; row ``i``'s relevant item is column ``i``.
        ks: cut-offs.

    Returns:
        k → ``()`` fraction of rows whose relevant item ranks in the top k (ties count against it).
    """
    if similarity.dim() != 2 or similarity.shape[0] != similarity.shape[1]:
        raise ValueError(f"similarity must be square (Q, Q), got {tuple(similarity.shape)}")
    positive = similarity.diagonal().unsqueeze(1)  # (Q, 1)
    rank = (similarity >= positive).sum(dim=1) - 1  # (Q,) items scoring at least as high, itself excluded
    return {k: (rank < k).float().mean() for k in ks}


def retrieval_metrics(embeds_a: Tensor, embeds_b: Tensor, ks: Sequence[int] = (1, 5, 10),
                      initials: tuple[str, str] = ("i", "t")) -> dict[str, Tensor]:
    """Recall@k both ways for aligned ``(N, E)`` normalized embeddings of two towers.

    Args:
        embeds_a, embeds_b: the first (a) and second (b) tower's embeddings, row i of each a pair.
        ks: the k of each recall.
        initials: the towers' letters in metric names: ``("i", "t")`` gives ``t2i_r@k`` (text queries,
            image items) and ``i2t_r@k``; ``("a", "t")`` gives ``t2a_r@k`` and ``a2t_r@k``.
    """
    a, b = initials
    sim = embeds_a.float() @ embeds_b.float().t()  # (N a-items, N b-items)
    out = {f"{b}2{a}_r@{k}": v for k, v in recall_at_k(sim.t(), ks).items()}
    out.update({f"{a}2{b}_r@{k}": v for k, v in recall_at_k(sim, ks).items()})
    return out


def zeroshot_classifier(encode_text: Callable[[list[str]], Tensor], classes: Sequence[str],
                        templates: Sequence[str]) -> Tensor:
    """Class embeddings ``(C, E)``: each class's prompts embedded, normalized, averaged, renormalized.

    Args:
        encode_text: strings → ``(n, E)`` embeddings (tokenization included).
        classes: class names.
        templates: prompts with one ``{}`` for the class name (CLIP's prompt ensembling).
    """
    if not classes or not templates:
        raise ValueError("zero-shot classification needs at least one class name and one template")
    bad = [t for t in templates if t.count("{}") != 1]
    if bad:
        raise ValueError(f"zero-shot template {bad[0]!r} must contain exactly one '{{}}' for the class name")
    prompts = [t.format(c) for c in classes for t in templates]
    emb = F.normalize(encode_text(prompts).float(), dim=-1)  # (C * T, E)
    emb = emb.view(len(classes), len(templates), -1).mean(dim=1)
    return F.normalize(emb, dim=-1)


def gather_rows(x: Tensor) -> Tensor:
    """Concatenates ``x (n_r, ...)`` from every rank, in rank order, when ranks hold different counts."""
    if world_size() == 1:
        return x
    n = torch.tensor([x.shape[0]], device=x.device)
    sizes = [torch.zeros_like(n) for _ in range(world_size())]
    dist.all_gather(sizes, n)
    top = int(max(s.item() for s in sizes))
    padded = torch.zeros((top, *x.shape[1:]), dtype=x.dtype, device=x.device)
    padded[: x.shape[0]] = x
    parts = [torch.empty_like(padded) for _ in sizes]
    dist.all_gather(parts, padded)
    return torch.cat([p[: int(s.item())] for p, s in zip(parts, sizes)])

"""Layer-wise learning-rate decay (BEiT, Bao et al. 2021; as timm's ``param_groups_layer_decay``).

With ``L`` blocks per backbone stack, a parameter at layer ``i`` trains at ``lr · decay^(L + 1 − i)``:
tokenizers (embeddings, patch projections, positions) are layer 0, block ``k`` of a stack is layer
``k + 1``, and everything else — the stack's final norm, heads, projections, temperatures — is layer
``L + 1`` at the full rate. Models with several stacks (encoder and decoder) number each stack's blocks
from 1 and take ``L`` as the deepest stack's depth.
"""

from __future__ import annotations

from torch import nn

from mmformer.backbone import Decoder, Encoder
from mmformer.tokenizers.base import ModalityTokenizer


def layer_ids(model: nn.Module) -> tuple[dict[str, int], int]:
    """Each trainable-or-not parameter's layer id, and ``L`` (the deepest stack's block count).

    Args:
        model: any module holding mmformer tokenizers and backbone stacks (a task or its ``model``).
    Returns:
        ``({parameter name: layer id}, L)``.
    Raises:
        ValueError: the model has no :class:`~mmformer.backbone.Encoder`/``Decoder`` to count layers in.
    """
    stacks = {n: m for n, m in model.named_modules() if isinstance(m, (Encoder, Decoder))}
    if not stacks:
        raise ValueError(f"layer_decay needs a backbone stack (Encoder/Decoder) to number layers, and "
                         f"{type(model).__name__} has none; set optim.layer_decay: null")
    depth = max(len(s.blocks) for s in stacks.values())
    tokenizers = [n for n, m in model.named_modules() if isinstance(m, ModalityTokenizer)]
    ids: dict[str, int] = {}
    for name, _ in model.named_parameters():
        ids[name] = depth + 1
        if any(name.startswith(f"{t}.") if t else True for t in tokenizers):
            ids[name] = 0
            continue
        for s in stacks:
            head = f"{s}.blocks." if s else "blocks."
            if name.startswith(head):
                ids[name] = int(name[len(head):].split(".", 1)[0]) + 1
                break
    return ids, depth


def layer_scales(model: nn.Module, decay: float) -> dict[str, float]:
    """``{parameter name: lr multiplier}`` = ``decay ** (L + 1 - layer_id)``."""
    if not 0.0 < decay <= 1.0:
        raise ValueError(f"layer_decay must be in (0, 1], got {decay}")
    ids, depth = layer_ids(model)
    return {name: decay ** (depth + 1 - i) for name, i in ids.items()}

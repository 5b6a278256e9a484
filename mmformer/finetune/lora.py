"""LoRA (Hu et al. 2021): a frozen linear layer plus a trainable low-rank update ``W + (alpha/r) B A``.

:class:`LoRALinear` subclasses ``nn.Linear`` and keeps its ``weight`` and ``bias`` under their own
names, so the state_dict of a model with LoRA is the plain model's plus ``*.lora_A`` / ``*.lora_B``:
pretrained weights and non-LoRA checkpoints load into it unchanged, and :func:`merge_lora` returns the
exact plain module tree (plain ``nn.Linear``s) that ``mmformer export`` writes. peft's ``LoraLayer``
wraps the layer as ``base_layer`` instead, renaming every weight it touches; that is why this is not peft.

A subclass of ``nn.Linear`` (an LM head, a projection head) keeps its class's behaviour: it becomes an instance
of ``LoRA<Class>``, a subclass of both its class and :class:`LoRALinear`, so its own methods and keyword
arguments stay (``ProjectionHead(x, normalize=True)``) and the linear product it reaches through
``super().forward`` / ``nn.Linear``'s forward carries the update. A weight tied to another module (an LM head's
to the input embedding) stays that module's parameter: LoRA leaves its ``requires_grad`` to its owner, and
:func:`merge_lora` refuses to fold an update into it (that would change the embedding too).
"""

from __future__ import annotations

import math
from collections import OrderedDict
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Iterator

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mmformer.finetune.freeze import match_names


@dataclass
class LoRAConfig:
    """LoRA settings; YAML keys under ``finetune.lora``."""

    rank: int = 8  # r: the update's rank
    alpha: float = 16.0  # the update is scaled by alpha / rank
    dropout: float = 0.0  # dropout on the update's input (training only)
    targets: list[str] = field(default_factory=lambda: ["qkv", "proj"])  # linear layers: last name or pattern


class LoRALinear(nn.Linear):
    """``y = x Wᵀ + b + (alpha/r) · dropout(x) Aᵀ Bᵀ``; ``A`` (r, in) Kaiming-uniform, ``B`` (out, r) zeros,
    so a fresh layer computes exactly what the plain one did. ``weight`` and ``bias`` are frozen."""

    def __init__(self, in_features: int, out_features: int, bias: bool = True, *, rank: int = 8,
                 alpha: float = 16.0, dropout: float = 0.0, device=None, dtype=None) -> None:
        super().__init__(in_features, out_features, bias, device=device, dtype=dtype)
        self._add_update(rank, alpha, dropout)

    def _add_update(self, rank: int, alpha: float, dropout: float, freeze_base: bool = True) -> None:
        if rank <= 0:
            raise ValueError(f"LoRA rank must be positive, got {rank}")
        w = self.weight
        self.rank, self.alpha, self.scaling = rank, alpha, alpha / rank
        self.lora_A = nn.Parameter(torch.empty(rank, self.in_features, device=w.device, dtype=w.dtype))
        self.lora_B = nn.Parameter(torch.zeros(self.out_features, rank, device=w.device, dtype=w.dtype))
        nn.init.kaiming_uniform_(self.lora_A, a=math.sqrt(5))  # as peft and the LoRA paper's code
        self.lora_dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        if freeze_base:
            w.requires_grad_(False)
        if self.bias is not None:
            self.bias.requires_grad_(False)

    @classmethod
    def from_linear(cls, linear: nn.Linear, rank: int, alpha: float, dropout: float,
                    freeze_base: bool = True) -> "LoRALinear":
        """A LoRA layer holding ``linear``'s own weight and bias parameters (no copy, no re-init): a
        :class:`LoRALinear` for a plain ``nn.Linear``, a ``LoRA<Class>`` (see :func:`lora_class`) for a subclass,
        with the subclass's attributes. ``freeze_base=False`` leaves the weight's ``requires_grad`` alone (a weight
        tied to another module)."""
        klass = lora_class(type(linear))
        out = klass.__new__(klass)
        nn.Module.__init__(out)
        for key, value in linear.__dict__.items():  # the layer's own attributes (a subclass's too), hooks aside
            if key in ("_parameters", "_buffers", "_modules"):
                out.__dict__[key] = OrderedDict(value)  # copies: adding the update must not touch ``linear``
            elif key not in out.__dict__ or key == "training":
                out.__dict__[key] = value
        out._add_update(rank, alpha, dropout, freeze_base)
        return out

    def forward(self, x: Tensor) -> Tensor:
        update = F.linear(F.linear(self.lora_dropout(x), self.lora_A), self.lora_B)  # (..., r) → (..., out)
        return F.linear(x, self.weight, self.bias) + self.scaling * update

    def merged(self) -> nn.Linear:
        """The layer without LoRA, of its original class (a plain ``nn.Linear`` for :class:`LoRALinear`), with
        ``W + (alpha/r) B A`` (computed in fp32, stored in W's dtype) in new trainable parameters."""
        base = _BASE_OF.get(type(self), nn.Linear)
        out = base.__new__(base)
        nn.Module.__init__(out)
        for key, value in self.__dict__.items():
            if key in ("_parameters", "_buffers", "_modules"):
                out.__dict__[key] = OrderedDict(value)
            elif key not in out.__dict__ or key == "training":
                out.__dict__[key] = value
        for key in ("rank", "alpha", "scaling"):
            del out.__dict__[key]
        del out._parameters["lora_A"], out._parameters["lora_B"], out._modules["lora_dropout"]
        with torch.no_grad():
            delta = self.scaling * (self.lora_B.float() @ self.lora_A.float())  # (out, in)
            out.weight = nn.Parameter((self.weight.float() + delta).to(self.weight.dtype))
            if self.bias is not None:
                out.bias = nn.Parameter(self.bias.detach().clone())
        return out

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, rank={self.rank}, alpha={self.alpha}"


# LoRA<Class> -> Class, for the subclasses of nn.Linear that lora_class made.
_BASE_OF: dict[type, type] = {}
_LORA_OF: dict[type, type] = {}


def lora_class(linear_class: type) -> type:
    """The LoRA class for layers of ``linear_class``: :class:`LoRALinear` for ``nn.Linear``; for a subclass,
    ``LoRA<Class>(Class, LoRALinear)`` (made once), whose MRO puts ``Class``'s methods first and
    :class:`LoRALinear`'s forward where ``Class`` reaches ``nn.Linear.forward``. A subclass must compute its
    product through that forward (``super().forward``), as mmformer's heads do."""
    if linear_class is nn.Linear or issubclass(linear_class, LoRALinear):
        return LoRALinear if linear_class is nn.Linear else linear_class
    if linear_class not in _LORA_OF:
        name = f"LoRA{linear_class.__name__}"
        klass = type(name, (linear_class, LoRALinear), {"__module__": __name__, "__qualname__": name})
        _LORA_OF[linear_class], _BASE_OF[klass] = klass, linear_class
        globals().setdefault(name, klass)  # found by name (pickle, copy) once made in this process
    return _LORA_OF[linear_class]


def _shared_weights(root: nn.Module, name: str) -> bool:
    """Whether the weight of layer ``name`` is also a parameter of another module of ``root`` (tied)."""
    w = root.get_submodule(name).weight
    return any(p is w for n, m in root.named_modules() if n != name for p in m.parameters(recurse=False))


def _set_child(root: nn.Module, name: str, child: nn.Module) -> None:
    parent, _, leaf = name.rpartition(".")
    setattr(root.get_submodule(parent) if parent else root, leaf, child)


def inject_lora(root: nn.Module, cfg: LoRAConfig) -> list[str]:
    """Replaces each ``nn.Linear`` of ``root`` that a target names with a :class:`LoRALinear`.

    A target matches a layer by its last name (``qkv`` matches ``backbone.blocks.3.attn.qkv``) or as a
    pattern over the full module name (see :func:`mmformer.finetune.freeze.match_names`). Layers that are
    already LoRA are left alone, so injecting twice is harmless.

    Args:
        root: the module to modify in place.
        cfg: rank, alpha, dropout and targets.
    Returns:
        the names of the LoRA layers (all of them, new and existing).
    Raises:
        ValueError: a target that names no linear layer of ``root`` (the message lists the linear names).
    """
    linears = [n for n, m in root.named_modules() if isinstance(m, nn.Linear) and n]
    chosen: set[str] = set()
    for target in cfg.targets:
        hits = [n for n in linears if n.rsplit(".", 1)[-1] == target] or match_names(linears, [target], strict=False)
        if not hits:
            leaves = sorted({n.rsplit(".", 1)[-1] for n in linears})
            raise ValueError(f"LoRA target {target!r} names no linear layer; linear layer names are {leaves} "
                             f"(or give a pattern over full names such as 'backbone.blocks.*.attn.qkv')")
        chosen.update(hits)
    for name in sorted(chosen):
        layer = root.get_submodule(name)
        if not isinstance(layer, LoRALinear):
            _set_child(root, name, LoRALinear.from_linear(layer, cfg.rank, cfg.alpha, cfg.dropout,
                                                          freeze_base=not _shared_weights(root, name)))
    return sorted(chosen)


def lora_layers(root: nn.Module) -> list[str]:
    """Names of the :class:`LoRALinear` layers in ``root``."""
    return [n for n, m in root.named_modules() if isinstance(m, LoRALinear)]


def merge_lora(root: nn.Module) -> int:
    """Folds every LoRA update into its base weight, in place: each :class:`LoRALinear` becomes a layer of its
    original class (trainable again), so the state_dict has the plain model's names. Returns the count.

    Raises:
        ValueError: a LoRA layer whose weight is tied to another module's."""
    names = lora_layers(root)
    tied = [n for n in names if _shared_weights(root, n)]
    if tied:
        raise ValueError(f"LoRA layers {tied} share their weight with another module (a tied embedding): folding "
                         f"the update in would change that module too; train LoRA on an untied layer (e.g. "
                         f"tie_embeddings: false) or keep the model unmerged")
    for name in names:
        layer = root.get_submodule(name)
        _set_child(root, name, layer.merged().train(layer.training))
    return len(names)


def lora_spec(root: nn.Module) -> dict[str, dict[str, float]]:
    """``{layer name: {rank, alpha, dropout}}`` of ``root``'s LoRA layers: plain values, saved beside a
    checkpoint's weights so whoever loads it can rebuild the layers first (:func:`restore_lora`)."""
    out = {}
    for name in lora_layers(root):
        m = root.get_submodule(name)
        drop = m.lora_dropout.p if isinstance(m.lora_dropout, nn.Dropout) else 0.0
        out[name] = {"rank": m.rank, "alpha": m.alpha, "dropout": drop}
    return out


def restore_lora(root: nn.Module, spec: dict[str, dict[str, float]]) -> None:
    """Turns the layers ``spec`` names into LoRA layers (those already LoRA are left alone).

    Raises:
        ValueError: a named layer that is missing or not a linear layer.
    """
    for name, s in spec.items():
        try:
            layer = root.get_submodule(name)
        except AttributeError:
            layer = None
        if isinstance(layer, LoRALinear):
            continue
        if not isinstance(layer, nn.Linear):
            raise ValueError(f"the checkpoint has LoRA on {name!r}, which is not a linear layer of "
                             f"{type(root).__name__}; load it into the model it was trained with")
        _set_child(root, name, LoRALinear.from_linear(layer, int(s["rank"]), float(s["alpha"]), float(s["dropout"]),
                                                      freeze_base=not _shared_weights(root, name)))


@contextmanager
def lora_hidden(root: nn.Module) -> Iterator[nn.Module]:
    """Within the block, ``root``'s state_dict and load_state_dict see the plain model (no LoRA tensors), so
    plain pretrained weights load strictly into the base weights of a model that already has LoRA. The
    LoRA parameters stay the same objects (an optimizer holding them is unaffected)."""
    saved = []
    for m in root.modules():
        if isinstance(m, LoRALinear):
            saved.append((m, m._parameters.pop("lora_A"), m._parameters.pop("lora_B")))
    try:
        yield root
    finally:
        for m, a, b in saved:
            m._parameters["lora_A"], m._parameters["lora_B"] = a, b

"""One fine-tuning set-up: pretrained weights by module prefix, then LoRA, then freezing."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import NamedTuple, Union

from torch import nn

from mmformer.finetune.freeze import count_trainable, freeze, match_names
from mmformer.finetune.lora import LoRAConfig, inject_lora
from mmformer.finetune.pretrained import Source, load_pretrained


@dataclass
class FineTuneConfig:
    """How to start a run from pretrained weights; names are relative to the task (``model.backbone``)."""

    # A source for the whole ``model`` (a path), or {module name: path | {source, prefix}}.
    pretrained: Union[str, dict[str, Union[str, dict[str, str]]], None] = None
    strict: bool = True  # every tensor of each target module must come from its source, none left over
    freeze: list[str] = field(default_factory=list)  # parameter-name patterns to freeze (globs, or 're:<regex>')
    lora: LoRAConfig | None = None  # LoRA on the target linears; freezes everything but LoRA and `train`
    train: list[str] = field(default_factory=list)  # with LoRA: patterns that stay trainable (a new head)


class FineTuneSummary(NamedTuple):
    loaded: list[str]  # module names given pretrained weights
    lora: list[str]  # LoRA layer names
    frozen: int  # frozen parameter tensors (by LoRA or by pattern)
    trainable: int  # trainable parameter count
    total: int  # all parameters


def pretrained_sources(cfg: FineTuneConfig, default_target: str = "model") -> dict[str, Source]:
    """``cfg.pretrained`` as ``{module name: source}`` (a bare path loads ``default_target``)."""
    if cfg.pretrained is None:
        return {}
    if isinstance(cfg.pretrained, str):
        return {default_target: cfg.pretrained}
    return dict(cfg.pretrained)


def apply_finetune(root: nn.Module, cfg: FineTuneConfig, *, load: bool = True,
                   default_target: str = "model") -> FineTuneSummary:
    """Sets ``root`` up for fine-tuning, in place: loads weights, adds LoRA, freezes.

    Args:
        root: the module names are relative to (a task module).
        cfg: what to do.
        load: load the pretrained sources (False when a checkpoint will overwrite the weights anyway).
        default_target: the module a bare ``pretrained: <path>`` loads into.
    Raises:
        ValueError / FileNotFoundError: a prefix naming no module, a missing source, a pattern matching
            no parameter, a LoRA target naming no linear layer — each named.
    """
    if cfg.train and cfg.lora is None:
        raise ValueError("finetune.train lists what stays trainable under LoRA, but finetune.lora is not set; "
                         "set lora, or use freeze to choose what trains")
    loaded = load_pretrained(root, pretrained_sources(cfg, default_target), cfg.strict) if load else []
    lora: list[str] = []
    if cfg.lora is not None:
        lora = inject_lora(root, cfg.lora)
        names = [n for n, _ in root.named_parameters()]
        keep = set(match_names(names, cfg.train, what="parameter")) if cfg.train else set()
        for name, p in root.named_parameters():
            if not (name.rsplit(".", 1)[-1] in ("lora_A", "lora_B") or name in keep):
                p.requires_grad_(False)
    if cfg.freeze:
        freeze(root, cfg.freeze)
    frozen = sum(not p.requires_grad for p in root.parameters())
    trainable, total = count_trainable(root)
    return FineTuneSummary(loaded, lora, frozen, trainable, total)


def frozen_batchnorms(root: nn.Module) -> list[nn.Module]:
    """BatchNorm layers all of whose parameters are frozen: kept in eval mode so their statistics stay too."""
    return [m for m in root.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)
            and not any(p.requires_grad for p in m.parameters(recurse=False))]


__all__ = ["FineTuneConfig", "FineTuneSummary", "LoRAConfig", "apply_finetune", "frozen_batchnorms",
           "pretrained_sources"]

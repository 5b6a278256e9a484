"""Loading pretrained weights into parts of a model, by module prefix.

``{"model.backbone": "runs/vit_export/", "model.tokenizer": {"source": "runs/vit_export/", "prefix": "tokenizer."}}``
loads each source into the named submodule through :func:`mmformer.pretrained.load_into`, which reads
an ``mmformer export`` folder as well as the checkpoints of the converted families (timm/HF ViT, CLIP,
BERT, ...). ``prefix`` picks the source's tensors under that name (an export of a whole classifier holds
``tokenizer.*``, ``backbone.*`` and ``head.*``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Mapping, Union

from torch import nn

from mmformer.finetune.lora import lora_hidden

# A source: a folder/file/hub id, or {"source": ..., "prefix": "backbone."}.
Source = Union[str, Mapping[str, str]]


def _split(target: str, spec: Source) -> tuple[str, str]:
    if isinstance(spec, (str, Path)):
        return str(spec), ""
    if isinstance(spec, Mapping) and "source" in spec and set(spec) <= {"source", "prefix"}:
        return str(spec["source"]), str(spec.get("prefix", ""))
    raise ValueError(f"pretrained[{target!r}] must be a path or {{source: <path>, prefix: <name.>}}, got {spec!r}")


def _check_source(target: str, source: str) -> None:
    """A source that is neither a local path nor shaped like a hub id (``owner/name``) is an error."""
    if Path(source).expanduser().exists():
        return
    if source.count("/") == 1 and not source.startswith((".", "/", "~")) and not source.endswith("/"):
        return  # a hub id: load_into fetches it where a network exists, or says why not
    raise FileNotFoundError(f"pretrained source {source!r} for {target!r} does not exist; give a folder written by "
                            f"`mmformer export` or a converted checkpoint folder (config.json + *.safetensors)")


def load_pretrained(root: nn.Module, sources: Mapping[str, Source], strict: bool = True) -> list[str]:
    """Loads each source into ``root``'s submodule named by its key, in order (LoRA layers, if any, keep
    their updates; their base weights load).

    Args:
        root: the module the prefixes are relative to (a task: ``model.backbone`` is ``root.model.backbone``).
        sources: ``{submodule name: source}``; ``""`` is ``root`` itself.
        strict: every tensor of the submodule must come from the source, and none be left over.
    Returns:
        the submodule names loaded.
    Raises:
        ValueError: a prefix that names no submodule.
        FileNotFoundError: a source that does not exist.
        mmformer.pretrained's errors for a checkpoint that does not fit (naming each tensor).
    """
    from mmformer.pretrained import load_into  # the converters' package, imported only when used

    for target, spec in sources.items():
        source, prefix = _split(target, spec)
        try:
            module = root.get_submodule(target) if target else root
        except AttributeError:
            children = [n for n, _ in root.named_children()]
            raise ValueError(f"pretrained prefix {target!r} names no module of {type(root).__name__} "
                             f"(its top-level modules: {children}); use dotted names like 'model.backbone'") from None
        _check_source(target, source)
        with lora_hidden(module):  # the base weights of LoRA layers load under their plain names
            load_into(module, source, strict=strict, prefix=prefix)
    return list(sources)

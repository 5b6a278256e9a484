"""Start from pretrained weights: converters from the checkpoints people fine-tune into mmformer models.

Each family module (``vit``, ``gpt2``, ``bert``, ``marian``, ``clip``, ``whisper``) has
``convert_state_dict(peer_state, config) -> mmformer state``, ``model_config(config) ->`` the typed model config
(:mod:`mmformer.models.config`) and ``build_model(config)`` = :func:`mmformer.models.build` of it (plus ``export``
back to the peer's layout), so a converted model saves as an mmformer export
(:func:`mmformer.models.exported.save_exported`). Two entry points serve them all::

    from mmformer.pretrained import from_pretrained, load_into
    model = from_pretrained("path/to/bert")            # a folder with config.json + *.safetensors
    load_into(task.model.encoder, "path/to/bert", prefix="backbone.")  # weights into an existing module

A source is a local folder in the peer's standard layout (Hugging Face ``save_pretrained``; timm's
``config.json`` with ``architecture``; open_clip's ``open_clip_config.json``), an mmformer export
folder (``model.safetensors`` + ``config.yaml``, see :mod:`mmformer.cli.export`), a plain
``.safetensors`` file of mmformer weights, or a hub id where a network exists.
"""

from __future__ import annotations

import argparse
import importlib
from pathlib import Path
from typing import Any

from torch import Tensor, nn

from mmformer.pretrained.common import (
    HF_CONFIG,
    MMFORMER_WEIGHTS,
    OPEN_CLIP_CONFIG,
    CheckpointError,
    is_mmformer_export,
    load_checked,
    read_json,
    read_safetensors,
    resolve_source,
)

CONVERTED = "mmformer_pretrained.json"  # what `mmformer convert` writes beside model.safetensors

# Hugging Face ``model_type`` → family module; timm and open_clip folders are told apart by their files.
MODEL_TYPES = {"vit": "vit", "gpt2": "gpt2", "bert": "bert", "marian": "marian", "clip": "clip",
               "whisper": "whisper"}


def detect_family(folder: Path) -> tuple[str, dict[str, Any]]:
    """``(family module name, config)`` of a peer checkpoint folder.

    Raises:
        CheckpointError: no config, or a ``model_type`` / architecture no converter handles (named).
    """
    if (folder / CONVERTED).is_file():  # already converted: {"family": ..., "config": the peer's config}
        doc = read_json(folder / CONVERTED)
        if doc.get("family") not in MODEL_TYPES.values():
            raise CheckpointError(f"{folder / CONVERTED}: unknown family {doc.get('family')!r}")
        return doc["family"], doc.get("config") or {}
    if (folder / OPEN_CLIP_CONFIG).is_file():
        return "clip", read_json(folder / OPEN_CLIP_CONFIG)
    if not (folder / HF_CONFIG).is_file():
        raise CheckpointError(f"{folder} has no {HF_CONFIG} (nor {OPEN_CLIP_CONFIG}, nor an mmformer export's "
                              f"config.yaml): cannot tell which model it holds")
    config = read_json(folder / HF_CONFIG)
    if "model_type" not in config and "architecture" in config:  # timm's hub layout
        arch = str(config["architecture"])
        if not arch.startswith(("vit_", "deit_")):
            raise CheckpointError(f"{folder / HF_CONFIG}: timm architecture {arch!r} is not supported "
                                  f"(only Vision Transformers: vit_*, deit_*)")
        return "vit", config
    model_type = config.get("model_type")
    if model_type not in MODEL_TYPES:
        raise CheckpointError(f"{folder / HF_CONFIG}: model_type {model_type!r} is not supported; "
                              f"known: {sorted(MODEL_TYPES)} (and timm ViTs, open_clip CLIPs)")
    return MODEL_TYPES[model_type], config


def family_module(name: str) -> Any:
    return importlib.import_module(f"mmformer.pretrained.{name}")


def converted_state(source: str | Path) -> dict[str, Tensor]:
    """The mmformer state dict a source holds (converted when it is a peer checkpoint)."""
    path = resolve_source(source)
    if path.is_file() or is_mmformer_export(path) or (path / CONVERTED).is_file():
        return read_safetensors(path if path.is_file() else path / MMFORMER_WEIGHTS)
    family, config = detect_family(path)
    return family_module(family).convert_state_dict(read_safetensors(path), config)


def from_pretrained(source: str | Path) -> nn.Module:
    """Builds the mmformer model of a checkpoint (peer folder, mmformer export or hub id), in eval mode."""
    path = resolve_source(source)
    if is_mmformer_export(path):
        from mmformer.models.exported import load_exported

        return load_exported(path)
    family, config = detect_family(path)
    mod = family_module(family)
    model = mod.build_model(config)
    state = converted_state(path)
    return load_checked(model, state, f"{path} ({family})").eval()


def special_ids(source: str | Path) -> dict[str, int]:
    """The generation ids of a text-generating checkpoint (GPT-2, Marian, Whisper):
    ``GenerationConfig(strategy="greedy", **special_ids(source))``."""
    family, config = detect_family(resolve_source(source))
    fn = getattr(family_module(family), "special_ids", None)
    if fn is None:
        raise CheckpointError(f"{source} is a {family} checkpoint, which does not generate text")
    return fn(config)


def convert(source: str | Path, out_dir: str | Path) -> Path:
    """Converts a peer checkpoint once: an mmformer export (``out_dir/model.safetensors`` in mmformer's names and
    ``out_dir/config.yaml`` with the typed model config, which :func:`mmformer.models.exported.load_exported`
    rebuilds without the peer's library) plus ``out_dir/mmformer_pretrained.json`` (the family and the peer's
    config), which :func:`from_pretrained`, :func:`load_into` and :func:`special_ids` read without converting
    again."""
    import json

    from mmformer.models.exported import save_exported

    path = resolve_source(source)
    family, config = detect_family(path)
    model = from_pretrained(path)
    try:
        cfg = family_module(family).model_config(config)
    except ValueError:  # a variant the typed config cannot say (a timm ViT with qkv_bias=False): weights only
        cfg = None
    out = Path(out_dir)
    if cfg is not None:
        save_exported(model, cfg, out)
    else:
        from safetensors.torch import save_file

        from mmformer.models.exported import plain_tensors

        out.mkdir(parents=True, exist_ok=True)
        save_file(plain_tensors(model.state_dict()), str(out / MMFORMER_WEIGHTS), metadata={"format": "pt"})
    (out / CONVERTED).write_text(json.dumps({"family": family, "config": config}, indent=2))
    return out


def build_parser() -> argparse.ArgumentParser:
    """The options of ``mmformer convert`` (also read from ``--config`` files by :mod:`mmformer.cli`)."""
    parser = argparse.ArgumentParser(prog="mmformer convert", description=convert.__doc__)
    parser.add_argument("source", help="a checkpoint folder (config.json + *.safetensors, timm, open_clip) or hub id")
    parser.add_argument("out_dir", help="folder to write model.safetensors and mmformer_pretrained.json into")
    return parser


def main(argv: list[str] | None = None) -> None:
    """``mmformer convert <source> <out_dir>``: a peer checkpoint (folder or hub id) → mmformer weights."""
    args = build_parser().parse_args(argv)
    out = convert(args.source, args.out_dir)  # a bad checkpoint raises; the console prints it as one line
    print(out / MMFORMER_WEIGHTS)


def load_into(module: nn.Module, source: str | Path, *, strict: bool = True, prefix: str = "") -> nn.Module:
    """Loads a checkpoint's (converted) weights into an existing mmformer module, in place.

    Args:
        module: e.g. a task's ``model`` or one part of it (``task.model.encoder``).
        source: a peer checkpoint folder, an mmformer export folder, an mmformer ``.safetensors``
            file, or a hub id.
        strict: every tensor of ``module`` must be in the checkpoint and every selected checkpoint
            tensor must be used; False loads what matches by name (shapes must still agree).
        prefix: loads only the checkpoint tensors under this prefix, with it stripped (e.g.
            ``"backbone."`` to put a converted BERT's encoder into a task's encoder).
    Returns:
        ``module``.
    Raises:
        CheckpointError: naming every missing / unexpected tensor and every shape mismatch.
    """
    state = converted_state(source)
    if prefix:
        state = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
        if not state:
            raise CheckpointError(f"{source} has no tensor under the prefix {prefix!r}")
    return load_checked(module, state, f"{source}{f' [{prefix}]' if prefix else ''}", strict)


__all__ = ["CheckpointError", "convert", "special_ids", "converted_state", "detect_family", "from_pretrained", "load_into"]

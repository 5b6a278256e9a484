"""What every converter shares: finding a checkpoint (local folder, file or hub id), reading its
safetensors and config, renaming tensors, and the errors for a wrong or partial checkpoint.

A converter's state dict is checked against the mmformer model it builds, so a missing tensor, an
unexpected one or a wrong shape is an error that names the tensor.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping

import torch
from torch import Tensor, nn

from mmformer.models.config import TokenizerSpec

MMFORMER_CONFIG, MMFORMER_WEIGHTS = "config.yaml", "model.safetensors"  # mmformer.cli.export's layout
HF_CONFIG = "config.json"
OPEN_CLIP_CONFIG = "open_clip_config.json"


class CheckpointError(ValueError):
    """A checkpoint that does not fit: missing or unexpected tensors, wrong shapes, unknown fields."""


def resolve_source(source: str | Path) -> Path:
    """A local folder or file as is; otherwise a hub id, downloaded with huggingface_hub's own cache.

    Raises:
        FileNotFoundError: not a local path, and the hub cannot be reached (no network) or has no such id.
    """
    path = Path(source)
    if path.exists():
        return path
    text = str(source)
    if text.startswith((".", "/", "~")) or text.count("/") > 1 or not text.strip():
        raise FileNotFoundError(f"{text!r} does not exist (pass a local folder with config.json + safetensors)")
    try:
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(text, allow_patterns=["*.json", "*.safetensors", "*.txt", "*.model"]))
    except Exception as e:  # offline, unknown id, gated repo: all end the same way for the user
        raise FileNotFoundError(
            f"cannot fetch hub id {text!r} ({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}); "
            f"there is no network or no such model: download it elsewhere and pass the local folder instead"
        ) from e


def read_safetensors(folder: Path) -> dict[str, Tensor]:
    """Every tensor of ``folder``'s ``*.safetensors`` files (sharded checkpoints included), or of a file."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    files = [folder] if folder.is_file() else sorted(folder.glob("*.safetensors"))
    if not files:
        raise FileNotFoundError(f"{folder} has no *.safetensors file; save the model with safetensors "
                                f"(save_pretrained(..., safe_serialization=True) or safetensors.torch.save_file)")
    state: dict[str, Tensor] = {}
    for f in files:
        try:
            state.update(load_file(str(f)))
        except (SafetensorError, OSError) as e:
            raise CheckpointError(f"{f} cannot be read as safetensors: {e}") from e
    return state


def read_json(path: Path) -> dict[str, Any]:
    try:
        doc = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise CheckpointError(f"{path} cannot be read as JSON: {e}") from e
    if not isinstance(doc, dict):
        raise CheckpointError(f"{path} holds a {type(doc).__name__}, not a JSON object")
    return doc


def field(config: Mapping[str, Any], name: str, default: Any = ..., where: str = "config.json") -> Any:
    """``config[name]``; a missing field without a default is an error naming it."""
    if name in config and config[name] is not None:
        return config[name]
    if default is ...:
        raise CheckpointError(f"{where} has no field {name!r}, which this converter needs")
    return default


def rename(state: Mapping[str, Tensor], rules: Iterable[tuple[str, str]]) -> dict[str, Tensor]:
    """Renames keys by their first matching prefix rule ``(old, new)``; keys no rule matches are kept."""
    rules = list(rules)
    out = {}
    for key, value in state.items():
        old, new = next(((o, n) for o, n in rules if key.startswith(o)), ("", ""))
        out[new + key[len(old):]] = value
    return out


def take(state: dict[str, Tensor], name: str) -> Tensor:
    """Pops ``state[name]``; a missing tensor is an error naming it."""
    if name not in state:
        raise CheckpointError(f"the checkpoint has no tensor {name!r}")
    return state.pop(name)


def check_state(expected: Mapping[str, Tensor], state: Mapping[str, Tensor], what: str,
                strict: bool = True) -> None:
    """Raises one error naming every missing or (strict) unexpected tensor and every shape mismatch."""
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected)) if strict else []
    shapes = sorted(f"{k}: checkpoint {tuple(state[k].shape)} vs model {tuple(expected[k].shape)}"
                    for k in set(expected) & set(state) if state[k].shape != expected[k].shape)
    if not (missing if strict else []) and not unexpected and not shapes:
        return
    parts = [f"{label} {items[:10]}{' ...' if len(items) > 10 else ''}"
             for label, items in (("missing tensors", missing if strict else []), ("unexpected tensors", unexpected),
                                  ("shape mismatches", shapes)) if items]
    raise CheckpointError(f"{what} does not fit the model: " + "; ".join(parts))


def load_checked(model: nn.Module, state: Mapping[str, Tensor], what: str, strict: bool = True) -> nn.Module:
    """``model.load_state_dict(state)`` after :func:`check_state`, so every problem is named at once.

    Buffers that are not persistent (sin/cos tables) are not expected; tied weights need one copy.
    """
    expected = model.state_dict()
    check_state(expected, state, what, strict)
    with torch.no_grad():
        model.load_state_dict(dict(state), strict=False)
    return model


def is_mmformer_export(folder: Path) -> bool:
    return folder.is_dir() and (folder / MMFORMER_CONFIG).is_file() and (folder / MMFORMER_WEIGHTS).is_file()


Converter = Callable[[Path], dict[str, Tensor]]

# One tensor of an mmformer model and the peer tensors it is made of: (mmformer name, peer names,
# transform). Several peer names are concatenated along dim 0 (q, k, v → one fused qkv); the transform
# "T" transposes (GPT-2's Conv1D and open_clip's projections store (in, out)).
Entry = tuple[str, tuple[str, ...], str]


def convert_entries(peer_state: Mapping[str, Tensor], entries: Iterable[Entry], what: str,
                    ignore: Iterable[str] = ()) -> dict[str, Tensor]:
    """Peer state → mmformer state by ``entries``; a peer tensor that is missing, or left over and not
    matched by an ``ignore`` pattern (fnmatch; non-learned buffers), is an error naming it."""
    from fnmatch import fnmatch

    state, out = dict(peer_state), {}
    for mine, theirs, transform in entries:
        parts = [take(state, name) for name in theirs]
        t = torch.cat(parts, 0) if len(parts) > 1 else parts[0]
        out[mine] = t.t() if transform == "T" else t
    ignore = tuple(ignore)
    left = sorted(k for k in state if not any(fnmatch(k, pat) for pat in ignore))
    if left:
        raise CheckpointError(f"{what} has tensors this converter does not know: {left[:10]}"
                              f"{' ...' if len(left) > 10 else ''} (a different architecture or variant?)")
    return out


def export_entries(state: Mapping[str, Tensor], entries: Iterable[Entry]) -> dict[str, Tensor]:
    """The inverse of :func:`convert_entries`: mmformer state → peer state (fused tensors split evenly)."""
    out = {}
    for mine, theirs, transform in entries:
        if mine not in state:
            raise CheckpointError(f"the model has no tensor {mine!r} to export")
        t = state[mine].detach().cpu()
        t = t.t() if transform == "T" else t
        parts = t.chunk(len(theirs), 0) if len(theirs) > 1 else (t,)
        for name, part in zip(theirs, parts):
            out[name] = part.contiguous()
    return out


def write_folder(out_dir: str | Path, state: Mapping[str, Tensor], config: Mapping[str, Any],
                 weights: str = "model.safetensors", config_name: str = HF_CONFIG) -> Path:
    """Writes ``out_dir/<weights>`` (safetensors, shared storage cloned) and ``out_dir/<config_name>``."""
    from safetensors.torch import save_file

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    plain, seen = {}, set()
    for name, t in state.items():
        t = t.detach().cpu()
        if t.untyped_storage().data_ptr() in seen:
            t = t.clone()
        seen.add(t.untyped_storage().data_ptr())
        plain[name] = t.contiguous()
    save_file(plain, str(out / weights), metadata={"format": "pt"})
    (out / config_name).write_text(json.dumps(dict(config), indent=2))
    return out


def mlp_ratio(dim: int, hidden: int) -> float:
    """``hidden / dim``, checked to reproduce ``hidden`` the way the backbone rounds it."""
    ratio = hidden / dim
    if int(dim * ratio) != hidden:
        raise CheckpointError(f"MLP width {hidden} is not reproducible from width {dim}")
    return ratio


def tokenizer_spec(cls: type, **init_args: Any) -> TokenizerSpec:
    """A model config's tokenizer entry for ``cls(dim, **init_args)``, by its dotted path (so it serializes)."""
    return TokenizerSpec(f"{cls.__module__}.{cls.__qualname__}", init_args)

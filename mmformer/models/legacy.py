"""State_dict layouts of older checkpoints and exports, upgraded by a pure function (no Lightning): the table
and its use are described in :mod:`mmformer.tasks.legacy`, which re-exports these names. Exports are loaded by
:mod:`mmformer.models.exported` with the same renames (an exported ``task.model`` state_dict has the task's keys
without ``model.``).
"""

from __future__ import annotations

from typing import Mapping, TypeVar

FORMAT_KEY = "mmformer_format"  # checkpoint entry: the state_dict layout version
FORMAT_VERSION = 2  # 0 (absent) = before the redesign; 1 = contrastive towers named image/text

_TOWERS = tuple((f"model.{old}_{part}.", f"model.{part}_{new}.")
                for part in ("tokenizer", "backbone", "pool", "proj") for old, new in (("image", "a"), ("text", "b")))

# format version → task class name → (old prefix, new prefix) renames from the version before it
# to that version, applied in order (the first prefix that matches a key renames it)
RENAMES: dict[int, dict[str, tuple[tuple[str, str], ...]]] = {
    1: {"ClassificationTask": (("model.head.attn_pool.", "model.head.pool.attn."),),
        "Seq2SeqTask": (("ctc_head.", "model.ctc_head."),),
        "DecisionTransformerTask": (("model.head.1.", "model.head.fc."),)},
    2: {"ContrastiveTask": _TOWERS},
}

V = TypeVar("V")


def legacy_task_name(cls: type) -> str | None:
    """The first class in ``cls``'s MRO with a rename table (so subclasses of a task upgrade too)."""
    names = {name for table in RENAMES.values() for name in table}
    return next((c.__name__ for c in cls.__mro__ if c.__name__ in names), None)


def upgrade_state_dict(task_name: str | None, state_dict: Mapping[str, V], version: int = 0) -> dict[str, V]:
    """A task state_dict of layout ``version`` with its keys renamed to the current layout (order kept).

    Args:
        task_name: the task class's name (see :data:`RENAMES`); an unknown name (a task of another
            package) leaves the keys as they are.
        state_dict: the checkpoint's ``state_dict``; not modified.
        version: the checkpoint's ``mmformer_format`` (0 when it has none).
    Returns:
        a new dict; a key that is already current stays as it is, so upgrading twice changes nothing.
    """
    out: dict[str, V] = dict(state_dict)
    for step in range(version + 1, FORMAT_VERSION + 1):
        renames = RENAMES.get(step, {}).get(task_name or "", ())
        if renames:
            out = {_renamed(key, renames): value for key, value in out.items()}
    return out


def _renamed(key: str, renames: tuple[tuple[str, str], ...]) -> str:
    old, new = next(((old, new) for old, new in renames if key.startswith(old)), ("", ""))
    return new + key[len(old):]


def upgrade_module_names(task_name: str | None, modules: Mapping[str, V], version: int = 0) -> dict[str, V]:
    """:func:`upgrade_state_dict` for module names (e.g. a checkpoint writer's backbones by name,
    ``model.image_backbone`` → ``model.backbone_a``)."""
    upgraded = upgrade_state_dict(task_name, {f"{name}.": value for name, value in modules.items()}, version)
    return {name[:-1]: value for name, value in upgraded.items()}


# task class name → its renamed init arguments (old name → current), for configs written before the rename
RENAMED_ARGS: dict[str, dict[str, str]] = {
    "ContrastiveTask": {"image_tokenizer": "tokenizer_a", "text_tokenizer": "tokenizer_b", "text_backbone": "backbone_b",
                        "image_pool": "pool_a", "text_pool": "pool_b"},
    "Seq2SeqTask": {"encoder": "backbone"},  # before layout 1
}

__all__ = ["FORMAT_KEY", "FORMAT_VERSION", "RENAMED_ARGS", "RENAMES", "legacy_task_name", "upgrade_module_names",
           "upgrade_state_dict"]

"""Loading checkpoints written by older layouts of the tasks' state_dicts (``mmformer_format`` below
the current version; absent = 0, before the models/heads redesign).

State_dict keys are kept wherever they can be; the few that moved are renamed here by a pure
function, which :meth:`mmformer.tasks.base.TaskModule.on_load_checkpoint` applies before Lightning
loads the weights (an exported ``task.model`` state_dict uses the same keys without ``model.``).

=======================  =======  ===============================  ====================================
task                     format   before                           after
=======================  =======  ===============================  ====================================
ClassificationTask       0 → 1    ``model.head.attn_pool.*``       ``model.head.pool.attn.*`` (the shared Pooler)
Seq2SeqTask              0 → 1    ``ctc_head.*``                   ``model.ctc_head.*`` (the CTC head is in the model)
DecisionTransformerTask  0 → 1    ``model.head.1.*``               ``model.head.fc.*`` (ActionHead)
ContrastiveTask          1 → 2    ``model.image_{tokenizer,        ``model.{tokenizer,backbone,pool,proj}_a.*``
                                  backbone,pool,proj}.*``,         and ``..._b.*`` (towers named a and b)
                                  ``model.text_*``
=======================  =======  ===============================  ====================================

Modules that moved keep their old dotted paths importable (:data:`MOVED_MODULES`), so a saved config or a
script naming ``mmformer.generation.GenerationConfig`` (a ``class_path``) loads the class from its new home:
importing this module installs the aliases (task modules import it, so every config and checkpoint load has it).
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import sys
from types import ModuleType
from typing import Mapping, Sequence, TypeVar

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


# old module path -> the module that now holds its public names (decoding moved into one package)
MOVED_MODULES: dict[str, str] = {
    "mmformer.generation": "mmformer.decoding",
    "mmformer.logit_processors": "mmformer.decoding.processors",
    "mmformer.ctc": "mmformer.decoding.ctc",
    "mmformer.ctc_prefix": "mmformer.decoding.ctc_prefix",
    "mmformer.layers.packed_linear": "mmformer.decoding.packed",
}


def upgrade_class_path(path: str) -> str:
    """A dotted class path with a moved module replaced: ``mmformer.generation.GenerationConfig`` →
    ``mmformer.decoding.GenerationConfig``; other paths unchanged."""
    module, _, name = path.rpartition(".")
    return f"{MOVED_MODULES[module]}.{name}" if module in MOVED_MODULES else path


_OWN_SPECS: dict[str, importlib.machinery.ModuleSpec | None] = {}  # alias -> the spec of the module it names


class _MovedModuleFinder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """``import mmformer.generation`` (and the other moved paths) gives the module that replaced it."""

    def find_spec(self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None
                  ) -> importlib.machinery.ModuleSpec | None:
        if fullname not in MOVED_MODULES:
            return None
        return importlib.machinery.ModuleSpec(fullname, self)

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType:
        module = importlib.import_module(MOVED_MODULES[spec.name])
        _OWN_SPECS[spec.name] = module.__spec__  # the import system is about to set the alias's spec on it
        return module

    def exec_module(self, module: ModuleType) -> None:
        """The new module ran when it was imported; it gets its own spec back."""
        module.__spec__ = _OWN_SPECS.pop(module.__spec__.name)  # type: ignore[union-attr]


def install_module_aliases() -> None:
    """Makes the old paths of :data:`MOVED_MODULES` importable (idempotent)."""
    if not any(isinstance(f, _MovedModuleFinder) for f in sys.meta_path):
        sys.meta_path.insert(0, _MovedModuleFinder())  # before path and editable finders: these names are aliases


install_module_aliases()

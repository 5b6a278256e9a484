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
from typing import Sequence

from mmformer.models.legacy import (FORMAT_KEY, FORMAT_VERSION, RENAMED_ARGS, RENAMES,  # noqa: F401
                                    legacy_task_name, upgrade_module_names, upgrade_state_dict)


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

__all__ = ["FORMAT_KEY", "FORMAT_VERSION", "MOVED_MODULES", "RENAMED_ARGS", "RENAMES", "install_module_aliases",
           "legacy_task_name", "upgrade_class_path", "upgrade_module_names", "upgrade_state_dict"]

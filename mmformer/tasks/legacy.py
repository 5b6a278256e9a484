"""Loading checkpoints written before the models/heads redesign (checkpoints without ``mmformer_format``).

The redesign kept state_dict keys wherever it could; the few that moved are renamed here by a pure
function, which :meth:`mmformer.tasks.base.TaskModule.on_load_checkpoint` applies before Lightning
loads the weights (an exported ``task.model`` state_dict uses the same keys without ``model.``).

========================  ==========================  ==================================
task                      before (format 0)           now (format 1)
========================  ==========================  ==================================
ClassificationTask        ``model.head.attn_pool.*``  ``model.head.pool.attn.*`` (the shared Pooler)
Seq2SeqTask               ``ctc_head.*``              ``model.ctc_head.*`` (the CTC head is in the model)
DecisionTransformerTask   ``model.head.1.*``          ``model.head.fc.*`` (ActionHead)
ContrastiveTask           unchanged
========================  ==========================  ==================================
"""

from __future__ import annotations

from typing import Mapping, TypeVar

FORMAT_KEY = "mmformer_format"  # checkpoint entry: the state_dict layout version
FORMAT_VERSION = 1  # 0 (absent) = before the redesign

# task class name → (old prefix, new prefix) renames from format 0 to 1, applied in order
RENAMES: dict[str, tuple[tuple[str, str], ...]] = {
    "ClassificationTask": (("model.head.attn_pool.", "model.head.pool.attn."),),
    "Seq2SeqTask": (("ctc_head.", "model.ctc_head."),),
    "DecisionTransformerTask": (("model.head.1.", "model.head.fc."),),
    "ContrastiveTask": (),
}

V = TypeVar("V")


def legacy_task_name(cls: type) -> str | None:
    """The first class in ``cls``'s MRO with a rename table (so subclasses of a task upgrade too)."""
    return next((c.__name__ for c in cls.__mro__ if c.__name__ in RENAMES), None)


def upgrade_state_dict(task_name: str | None, state_dict: Mapping[str, V]) -> dict[str, V]:
    """A format-0 task state_dict with its keys renamed to the current layout (order kept).

    Args:
        task_name: the task class's name (see :data:`RENAMES`); an unknown name (a task of another
            package) leaves the keys as they are.
        state_dict: the checkpoint's ``state_dict``; not modified.
    Returns:
        a new dict; a key that is already current stays as it is, so upgrading twice changes nothing.
    """
    renames = RENAMES.get(task_name or "", ())
    out: dict[str, V] = {}
    for key, value in state_dict.items():
        for old, new in renames:
            if key.startswith(old):
                key = new + key[len(old):]
                break
        out[key] = value
    return out

"""The task roles a manifest's fields can be mapped to, and the start-up check of a recipe's mapping."""

from __future__ import annotations

from typing import Mapping

from mmformer.data.readers.manifest import FieldSpec, ManifestError

MEDIA = ("image", "audio", "text", "vector", "number")  # any of them may feed a tokenizer (plug-ins too)
# the field types each task role can take (extend it for a task of your own with new roles)
ROLE_TYPES: dict[str, tuple[str, ...]] = {
    "input": MEDIA, "label": ("label",),  # ClassificationTask
    "source": MEDIA, "target": ("text",),  # Seq2SeqTask; PrefixLMTask (source = the prefix, optional)
    "prompt": ("text",),  # PrefixLMTask's predict: the text each generated continuation starts with
    "a": MEDIA, "b": MEDIA,  # ContrastiveTask's two towers
}
TARGET_ROLES = ("label", "target")  # what a predict manifest may lack


def check_roles(fields: Mapping[str, FieldSpec], inputs: Mapping[str, str], zeroshot: Mapping[str, object]) -> None:
    """Checks a recipe's ``inputs`` (role → field) and ``zeroshot`` fields against its declared ``fields``.

    Raises:
        ManifestError: an unknown role, a field that is not declared, or a type the role cannot take.
    """
    if not inputs:
        raise ManifestError("data.init_args.inputs is empty: map the task's roles to fields, e.g. "
                            "{input: audio_filepath, label: keyword}")
    for role, name in inputs.items():
        if role not in ROLE_TYPES:
            raise ManifestError(f"inputs: unknown role {role!r}; the tasks read {sorted(ROLE_TYPES)}")
        if name not in fields:
            raise ManifestError(f"inputs: role {role!r} maps to field {name!r}, which data.init_args.fields "
                                f"does not declare (declared: {sorted(fields)})")
        kind = fields[name].type
        if kind not in ROLE_TYPES[role]:
            raise ManifestError(f"inputs: role {role!r} cannot take field {name!r} of type {kind}; it takes "
                                f"{list(ROLE_TYPES[role])}")
    for name in zeroshot:
        if name not in fields or fields[name].type != "label":
            raise ManifestError(f"zeroshot: {name!r} is not a declared label field (labels: "
                                f"{sorted(n for n, f in fields.items() if f.type == 'label')})")

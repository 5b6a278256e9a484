"""Every tokenizer there is: the built-in ones, those registered with ``@register_tokenizer`` and
those other packages expose in the ``mmformer.tokenizers`` entry-point group."""

from __future__ import annotations

from mmformer.tokenizers.base import ModalityTokenizer, registered_tokenizers


def list_tokenizers(include_entry_points: bool = True) -> dict[str, type[ModalityTokenizer]]:
    """Tokenizer classes by registered name.

    The built-in tokenizers register when their modules are imported; ``mmformer.tokenizers`` imports
    them lazily, so this imports them first (which loads torchaudio, sentencepiece and timm).

    Args:
        include_entry_points: also load the classes of the ``mmformer.tokenizers`` entry-point group.
    """
    import mmformer.tokenizers.audio  # noqa: F401  (each built-in module registers its tokenizer)
    import mmformer.tokenizers.image  # noqa: F401
    import mmformer.tokenizers.text  # noqa: F401
    import mmformer.tokenizers.trajectory  # noqa: F401

    return registered_tokenizers(include_entry_points)

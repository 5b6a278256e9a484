"""One backbone, many tasks (GATO-style generalist): per-task models that all hold the *same* causal
:class:`~mmformer.backbone.Encoder` instance, each with its own tokenizers and heads.

Every task's tokens go through the one stack; what differs per task is the attention mask of the call:

* classification inputs (:class:`~mmformer.models.Classifier`): bidirectional, ``prefix_len = N`` (the
  whole input is a prefix; :meth:`Classifier.forward_features` passes it when ``bidirectional`` is set);
* text outputs (:class:`~mmformer.models.PrefixLM`: translation with the source text as prefix, speech
  with audio frames as prefix, captions with image patches): the prefix-LM mask, bidirectional over the
  prefix and causal over the text;
* decision-transformer tokens (:class:`~mmformer.models.DecisionTransformer`): plain causal;
* an encoder–decoder (:class:`~mmformer.models.Seq2Seq`, e.g. translation): the shared backbone is its
  *encoder*, read bidirectionally over the source; its own causal decoder cross-attends to it (a
  cross-attention head, kept per task like every head).

``parameters()`` yields the shared weights once (``nn.Module`` deduplicates), so one optimizer over
:class:`MultiTaskModel` trains each weight once. ``state_dict()`` lists the shared backbone under every
path that reaches it (``backbone.*`` and ``models.<task>.backbone.*``, like tied embeddings); the values are
the same tensors, so loading it back restores one backbone. :func:`mmformer.cli.export` clones shared storage
before writing safetensors, which loads back the same way.
"""

from __future__ import annotations

from typing import Any, Mapping

from torch import nn

from mmformer.backbone import Encoder
from mmformer.models.classifier import Classifier
from mmformer.models.seq2seq import Seq2Seq


class MultiTaskModel(nn.Module):
    """Per-task models around one shared backbone.

    Args:
        backbone: the shared stack; causal so that every task's mask can be expressed (see module doc).
        models: task name → a plain model with a ``backbone`` attribute (Classifier, PrefixLM,
            DecisionTransformer, ...) or another one named by its ``shared_backbone`` (Seq2Seq: ``encoder``).
            That module is replaced by ``backbone``; its tokenizers and heads must already have its width.
    """

    def __init__(self, backbone: Encoder, models: Mapping[str, nn.Module]) -> None:
        super().__init__()
        if not isinstance(backbone, Encoder) or not backbone.causal:
            raise ValueError("a multi-task model shares one causal Encoder (BackboneConfig(causal=True)): classification "
                             "reads it bidirectionally through prefix_len, decoders causally")
        if not models:
            raise ValueError("a multi-task model needs at least one task model")
        self.backbone = backbone
        dim = backbone.config.dim
        for name, model in models.items():
            slot = getattr(model, "shared_backbone", "backbone")  # Seq2Seq shares its encoder
            if not isinstance(getattr(model, slot, None), nn.Module):
                raise TypeError(f"task {name!r}: {type(model).__name__} has no `{slot}` module to share")
            own = getattr(getattr(model, slot), "config", None)
            if own is not None and own.dim != dim:
                raise ValueError(f"task {name!r} was built at width {own.dim} but the shared backbone has dim {dim}; "
                                 f"build its tokenizers and heads at the shared width")
            setattr(model, slot, backbone)
            if isinstance(model, (Classifier, Seq2Seq)):
                model.bidirectional = True  # inputs are read whole, as the single-task encoder read them
        self.models = nn.ModuleDict(dict(models))

    @property
    def task_names(self) -> list[str]:
        return list(self.models.keys())

    def __getitem__(self, task: str) -> nn.Module:
        if task not in self.models:
            raise KeyError(f"unknown task {task!r}; this model has {self.task_names}")
        return self.models[task]

    def forward(self, task: str, *args: Any, **kwargs: Any) -> Any:
        """Runs task ``task``'s model: ``model(task, inputs)`` = ``model[task](inputs)``."""
        return self[task](*args, **kwargs)


__all__ = ["MultiTaskModel"]

"""Typed model configs: one dataclass per model family, holding names and numbers rather than classes so that
it serializes (a tokenizer is a :class:`TokenizerSpec`, ``{class_path, init_args}``, built with the width filled
in). :func:`mmformer.models.build` turns a config into the plain ``nn.Module``; the task modules build their
models from these, and an export stores one (:mod:`mmformer.models.exported`).

A task takes its model's config as its ``model`` argument (in YAML ``model.init_args.model``), and the config
alone describes the model: what a family derives from other fields (a seq2seq decoder copied from the encoder,
a causal backbone) is done in its ``__post_init__`` or its builder, and a tokenizer given as a YAML ``class_path``
(a ``functools.partial``) is normalized to a :class:`TokenizerSpec`.

The ``*_config`` functions read the flat model arguments that tasks took before (the names an older export's
``init_args`` recorded) into a config, for :mod:`mmformer.models.exported`. Other arguments (losses, metrics,
generation...) are ignored there.
"""

from __future__ import annotations

import functools
import importlib
import sys
from dataclasses import dataclass, field, replace
from typing import Any, Callable, ClassVar, Union

from mmformer.backbone import BackboneConfig
from mmformer.heads import Pool
from mmformer.models.legacy import RENAMED_ARGS
from mmformer.tokenizers.base import ModalityTokenizer
from mmformer.tokenizers.sentencepiece_vocab import PAD_ID
from mmformer.tokenizers.text import TextPositions


@dataclass
class TokenizerSpec:
    """A tokenizer by name: ``class_path(dim, **init_args)`` builds it at the backbone's width ``dim``."""

    class_path: str  # dotted path of a ModalityTokenizer subclass, e.g. mmformer.tokenizers.text.TextTokenizer
    init_args: dict[str, Any] = field(default_factory=dict)  # its constructor's arguments except dim

    def resolve(self) -> type[ModalityTokenizer]:
        """The tokenizer class ``class_path`` names; ValueError when it is not an importable ModalityTokenizer."""
        module, _, name = self.class_path.rpartition(".")
        try:
            cls = getattr(importlib.import_module(module), name)
        except (ImportError, AttributeError, ValueError) as e:
            raise ValueError(f"tokenizer class_path {self.class_path!r} cannot be imported ({e}); name a "
                             f"ModalityTokenizer class by its dotted path") from e
        if not (isinstance(cls, type) and issubclass(cls, ModalityTokenizer)):
            raise ValueError(f"tokenizer class_path {self.class_path!r} is not a ModalityTokenizer subclass")
        return cls

    def build(self, dim: int) -> ModalityTokenizer:
        return self.resolve()(dim, **self.init_args)

    @classmethod
    def of(cls, factory: Any) -> TokenizerSpec | None:
        """The spec of a tokenizer factory: a spec, a ``{class_path, init_args}`` dict, a tokenizer class, or a
        ``functools.partial`` of one (what the YAML's ``class_path`` + ``init_args`` become); None for any other
        callable (a lambda), which builds but cannot be written down."""
        if isinstance(factory, TokenizerSpec):
            return factory
        if isinstance(factory, dict) and "class_path" in factory:
            return cls(str(factory["class_path"]), dict(factory.get("init_args") or {}))
        args: dict[str, Any] = {}
        if isinstance(factory, functools.partial):
            args = dict(factory.keywords)
            if factory.args and isinstance(factory.args[-1], type):
                factory = factory.args[-1]  # jsonargparse: partial(call, [instantiator,] class, **init_args)
            elif not factory.args:
                factory = factory.func
            else:
                return None
        if isinstance(factory, type) and issubclass(factory, ModalityTokenizer):
            module = sys.modules.get(factory.__module__)
            if getattr(module, factory.__qualname__, None) is factory:  # importable by its path (not a local class)
                return cls(f"{factory.__module__}.{factory.__qualname__}", args)
        return None


# A tokenizer setting: a spec (serializable), or a python factory ``dim -> tokenizer`` (builds, cannot be exported).
Tokenizer = Union[TokenizerSpec, Callable[[int], ModalityTokenizer]]


def tokenizer_setting(factory: Any) -> Tokenizer:
    """A task's tokenizer argument as a config value: its :class:`TokenizerSpec` when it has one, else as given."""
    return TokenizerSpec.of(factory) or factory


def make_tokenizer(tokenizer: Tokenizer, dim: int) -> ModalityTokenizer:
    """Builds a tokenizer setting at width ``dim``."""
    return tokenizer.build(dim) if isinstance(tokenizer, TokenizerSpec) else tokenizer(dim)


@dataclass
class ClassifierConfig:
    """:class:`~mmformer.models.Classifier`: tokenizer → encoder → pooling head."""

    tokenizer: Tokenizer  # any modality's tokenizer, built at backbone.dim
    num_classes: int | None = None  # C, the logits' width; None = the data's class count
    backbone: BackboneConfig = field(default_factory=BackboneConfig)  # the encoder
    pool: Pool = "mean"  # cls, mean, attention or last pooling of the hidden states
    head_dropout: float = 0.0  # dropout before the classifier's linear layer
    fc_norm: bool = False  # timm's fc_norm: the encoder's final LayerNorm moves after pooling (its mean-pooled ViTs)

    def __post_init__(self) -> None:
        self.tokenizer = tokenizer_setting(self.tokenizer)


@dataclass
class Seq2SeqConfig:
    """:class:`~mmformer.models.Seq2Seq`: source tokenizer → encoder, target tokenizer → decoder → LM head.

    ``decoder`` None is ``backbone``'s config with ``decoder_depth or backbone.depth`` blocks, causal, reading the
    encoder's memory (:meth:`decoder_config`); a decoder that is given gets ``memory_dim = backbone.dim``.
    (Exports written before ``backbone`` was named so call it ``encoder``: :func:`~mmformer.models.config_from_dict`
    reads both.)"""

    source_tokenizer: Tokenizer  # any modality's tokenizer, built at backbone.dim
    target_vocab_size: int | None = None  # V of the target text (and of the CTC head); None = the data's vocabulary
    backbone: BackboneConfig = field(default_factory=BackboneConfig)  # the encoder (named so configs/model/*.yaml size it)
    decoder: BackboneConfig | None = None  # its own decoder (causal; memory = the encoder); None = backbone's copy
    target_positions: TextPositions = "learned"  # positional scheme of the target embedding
    target_scale: bool = False  # multiply target embeddings by sqrt(D)
    target_init_std: float | None = None  # target table's initial std; None = D^-0.5 with target_scale, else 0.02
    max_target_len: int = 256  # longest target, bos and eos included
    tie_embeddings: bool = True  # the output projection is the target embedding
    share_source_embedding: bool = False  # a text source over the target vocabulary uses the target's table
    ctc_vocab_size: int | None = 0  # > 0: a CTC head of that many labels on the encoder; None = the vocabulary's
    logits_bias: bool = False  # a learned per-token bias on the logits
    target_pad_id: int = PAD_ID  # the target vocabulary's pad id (masked out; a converted checkpoint's own)
    decoder_depth: int | None = None  # blocks of the decoder copied from backbone (decoder None); None = backbone.depth

    def __post_init__(self) -> None:
        self.source_tokenizer = tokenizer_setting(self.source_tokenizer)
        if self.decoder is not None:
            if self.decoder_depth is not None:
                raise ValueError(f"Seq2SeqConfig sets both decoder and decoder_depth={self.decoder_depth}: "
                                 f"decoder_depth sizes the decoder copied from backbone; set decoder.depth instead")
            if self.decoder.memory_dim not in (None, self.backbone.dim):
                raise ValueError(f"decoder.memory_dim={self.decoder.memory_dim} but the encoder's (backbone's) dim "
                                 f"is {self.backbone.dim}; leave memory_dim out (it is the encoder's width)")
            if self.decoder.memory_dim is None:
                self.decoder = replace(self.decoder, memory_dim=self.backbone.dim)

    def decoder_config(self) -> BackboneConfig:
        """The decoder's config: ``decoder``, or ``backbone``'s copy with ``decoder_depth`` blocks, causal."""
        if self.decoder is not None:
            return self.decoder
        b = self.backbone
        return replace(b, depth=self.decoder_depth or b.depth, causal=True, memory_dim=b.dim)


@dataclass
class PrefixLMConfig:
    """:class:`~mmformer.models.PrefixLM`: ``[prefix | text]`` through one causal backbone → LM head."""

    vocab_size: int | None = None  # V of the text; None = the data's vocabulary
    prefix_tokenizer: Tokenizer | None = None  # the prefix's tokenizer (image, audio, text...); None = a causal LM
    backbone: BackboneConfig = field(default_factory=lambda: BackboneConfig(causal=True))  # made causal (rotary
    # too with text_positions "rope") whatever it says
    text_positions: TextPositions = "learned"  # positional scheme of the text embedding
    text_scale: bool = False  # multiply text embeddings by sqrt(D)
    text_init_std: float | None = None  # text table's initial std; None = D^-0.5 with text_scale, else 0.02
    max_len: int = 256  # longest text, bos and eos included
    tie_embeddings: bool = True  # the output projection is the text embedding
    share_prefix_embedding: bool = False  # a text prefix over the same vocabulary uses the text's table
    ctc_vocab_size: int | None = 0  # > 0: a CTC head of that many labels on the prefix's states; None = V
    logits_bias: bool = False  # a learned per-token bias on the logits

    def __post_init__(self) -> None:
        if self.prefix_tokenizer is not None:
            self.prefix_tokenizer = tokenizer_setting(self.prefix_tokenizer)
        b = self.backbone
        if not b.causal or (self.text_positions == "rope" and not b.rope):
            self.backbone = replace(b, causal=True, rope=b.rope or self.text_positions == "rope")


@dataclass
class CausalLMConfig:
    """:class:`~mmformer.models.CausalLM` (GPT-2 style): text tokenizer → causal encoder → LM head."""

    tokenizer: Tokenizer  # a TextTokenizer spec (vocabulary size, positions, pad id)
    backbone: BackboneConfig = field(default_factory=lambda: BackboneConfig(causal=True))  # causal
    tie_embeddings: bool = True  # the output projection is the token embedding
    logits_bias: bool = False  # a learned per-token bias on the logits

    def __post_init__(self) -> None:
        self.tokenizer = tokenizer_setting(self.tokenizer)


@dataclass
class MaskedLMConfig:
    """:class:`~mmformer.models.MaskedLM` (BERT style): text tokenizer → bidirectional encoder → MLM head."""

    tokenizer: Tokenizer  # a TextTokenizer spec (its pad id masks pads out of attention)
    backbone: BackboneConfig = field(default_factory=BackboneConfig)  # bidirectional
    act: str = "gelu"  # the MLM head's activation (mmformer.layers.mlp.ACTIVATIONS)
    norm_eps: float = 1e-12  # the MLM head's LayerNorm epsilon

    def __post_init__(self) -> None:
        self.tokenizer = tokenizer_setting(self.tokenizer)


@dataclass
class ContrastiveConfig:
    """:class:`~mmformer.models.ContrastiveModel` (CLIP-style dual encoder): towers a and b, a temperature."""

    tokenizer_a: Tokenizer  # tower a's tokenizer (images, audio...), built at backbone.dim
    tokenizer_b: Tokenizer  # tower b's tokenizer (text...), built at backbone_b.dim (backbone.dim when shared)
    backbone: BackboneConfig = field(default_factory=BackboneConfig)  # tower a's encoder (both towers' when shared)
    backbone_b: BackboneConfig | None = None  # tower b's own encoder; None = tower a's instance is shared
    pool_a: Pool = "mean"  # pooling of tower a's hidden states
    pool_b: Pool = "mean"  # pooling of tower b's hidden states
    embed_dim: int = 128  # width E of the joint embedding space
    init_temperature: float = 0.07  # initial softmax temperature (logit scale 1/T, learned)
    # the image–text names of these fields before the towers were a and b (a config with one gets an error naming
    # the new name: mmformer.cli.errors)
    renamed_args: ClassVar[dict[str, str]] = {k: v for k, v in RENAMED_ARGS["ContrastiveTask"].items()}

    def __post_init__(self) -> None:
        self.tokenizer_a, self.tokenizer_b = tokenizer_setting(self.tokenizer_a), tokenizer_setting(self.tokenizer_b)


DualEncoderConfig = ContrastiveConfig  # the model's other name


@dataclass
class DecisionTransformerConfig:
    """:class:`~mmformer.models.DecisionTransformer`: trajectory tokens → causal encoder → action head."""

    tokenizer: Tokenizer  # a trajectory tokenizer (state_dim, act_dim, discrete_actions, state statistics)
    backbone: BackboneConfig = field(default_factory=lambda: BackboneConfig(dim=128, depth=3, num_heads=4,
                                                                            causal=True))  # made causal always
    context: int | None = None  # K, the timesteps the model sees; None = the data's
    head_dropout: float = 0.0  # dropout before the action head

    def __post_init__(self) -> None:
        self.tokenizer = tokenizer_setting(self.tokenizer)
        if not self.backbone.causal:
            self.backbone = replace(self.backbone, causal=True)


@dataclass
class MultiTaskConfig:
    """:class:`~mmformer.models.multitask.MultiTaskModel`: per-task models around one shared causal backbone."""

    models: dict[str, ModelConfig]  # task name → that task's model config (its backbone is replaced by the shared one)
    backbone: BackboneConfig = field(default_factory=lambda: BackboneConfig(causal=True))  # the shared stack, causal


ModelConfig = Union[ClassifierConfig, Seq2SeqConfig, PrefixLMConfig, CausalLMConfig, MaskedLMConfig,
                    ContrastiveConfig, DecisionTransformerConfig, MultiTaskConfig]
CONFIG_TYPES: tuple[type, ...] = (ClassifierConfig, Seq2SeqConfig, PrefixLMConfig, CausalLMConfig, MaskedLMConfig,
                                  ContrastiveConfig, DecisionTransformerConfig, MultiTaskConfig)


# ---- an older export's task arguments (flat, as the tasks took them before) → the config -------------------
def classifier_config(tokenizer: Tokenizer, num_classes: int | None, backbone: BackboneConfig | None = None,
                      pool: Pool = "mean", head_dropout: float = 0.0, **_: Any) -> ClassifierConfig:
    """:class:`~mmformer.tasks.ClassificationTask`'s former arguments."""
    return ClassifierConfig(tokenizer, num_classes, backbone or BackboneConfig(), pool, head_dropout)


def seq2seq_config(source_tokenizer: Tokenizer, target_vocab_size: int | None, backbone: BackboneConfig | None = None,
                   decoder: BackboneConfig | None = None, decoder_depth: int | None = None,
                   target_positions: TextPositions = "learned", target_scale: bool = False,
                   target_init_std: float | None = None, max_target_len: int = 256, tie_embeddings: bool = True,
                   share_source_embedding: bool = False, ctc_weight: float = 0.0, **_: Any) -> Seq2SeqConfig:
    """:class:`~mmformer.tasks.Seq2SeqTask`'s former arguments: ``ctc_weight > 0`` meant the CTC head."""
    return Seq2SeqConfig(source_tokenizer, target_vocab_size, backbone or BackboneConfig(), decoder, target_positions,
                         target_scale, target_init_std, max_target_len, tie_embeddings, share_source_embedding,
                         target_vocab_size if ctc_weight > 0 else 0, decoder_depth=decoder_depth)


def prefix_lm_config(vocab_size: int | None, prefix_tokenizer: Tokenizer | None = None,
                     backbone: BackboneConfig | None = None, text_positions: TextPositions = "learned",
                     text_scale: bool = False, text_init_std: float | None = None, max_len: int = 256,
                     tie_embeddings: bool = True, share_prefix_embedding: bool = False, ctc_weight: float = 0.0,
                     **_: Any) -> PrefixLMConfig:
    """:class:`~mmformer.tasks.PrefixLMTask`'s former arguments."""
    return PrefixLMConfig(vocab_size, prefix_tokenizer, backbone or BackboneConfig(), text_positions, text_scale,
                          text_init_std, max_len, tie_embeddings, share_prefix_embedding,
                          vocab_size if ctc_weight > 0 else 0)


def contrastive_config(tokenizer_a: Tokenizer, tokenizer_b: Tokenizer, backbone: BackboneConfig | None = None,
                       shared_backbone: bool = True, backbone_b: BackboneConfig | None = None, pool_a: Pool = "mean",
                       pool_b: Pool = "mean", embed_dim: int = 128, init_temperature: float = 0.07,
                       **_: Any) -> ContrastiveConfig:
    """:class:`~mmformer.tasks.ContrastiveTask`'s former arguments: tower b's encoder was a copy of ``backbone``
    unless ``shared_backbone``."""
    backbone = backbone or BackboneConfig()
    if shared_backbone and backbone_b is not None:
        raise ValueError("backbone_b is set but shared_backbone is true; drop one of them")
    cfg_b = None if shared_backbone else (backbone_b or replace(backbone))
    return ContrastiveConfig(tokenizer_a, tokenizer_b, backbone, cfg_b, pool_a, pool_b, embed_dim, init_temperature)


def decision_transformer_config(tokenizer: Tokenizer, backbone: BackboneConfig | None = None, context: int | None = 20,
                                head_dropout: float = 0.0, **_: Any) -> DecisionTransformerConfig:
    """:class:`~mmformer.tasks.DecisionTransformerTask`'s former arguments."""
    return DecisionTransformerConfig(tokenizer, backbone or BackboneConfig(dim=128, depth=3, num_heads=4), context,
                                     head_dropout)


def multitask_config(models: dict[str, ModelConfig], backbone: BackboneConfig | None = None,
                     **_: Any) -> MultiTaskConfig:
    """:class:`~mmformer.tasks.multitask.MultiTaskTask`'s model: the children's configs, the shared backbone causal."""
    return MultiTaskConfig(dict(models), replace(backbone or BackboneConfig(), causal=True))


__all__ = ["CONFIG_TYPES", "CausalLMConfig", "ClassifierConfig", "ContrastiveConfig", "DecisionTransformerConfig",
           "DualEncoderConfig", "MaskedLMConfig", "ModelConfig", "MultiTaskConfig", "PrefixLMConfig", "Seq2SeqConfig",
           "Tokenizer", "TokenizerSpec", "classifier_config", "contrastive_config", "decision_transformer_config",
           "make_tokenizer", "multitask_config", "prefix_lm_config", "seq2seq_config", "tokenizer_setting"]

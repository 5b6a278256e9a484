"""Plain ``nn.Module`` models, usable, testable and exportable without Lightning.

Each is built from a typed config (:mod:`mmformer.models.config`) by :func:`build`; the task modules in
:mod:`mmformer.tasks` build theirs so and wrap them with losses, metrics and logging.
:func:`mmformer.models.exported.load_exported` loads an export (``build(cfg)`` + safetensors).
``mmformer.models.timm_weights`` (timm ViT → :class:`Classifier`) is imported on demand: it needs timm's
model zoo.
"""

from mmformer.models.builders import build, config_from_dict, config_to_dict
from mmformer.models.causal_lm import CausalLM
from mmformer.models.classifier import Classifier, ClassifierFeatures
from mmformer.models.config import (CausalLMConfig, ClassifierConfig, ContrastiveConfig, DecisionTransformerConfig,
                                    DualEncoderConfig, MaskedLMConfig, ModelConfig, MultiTaskConfig, PrefixLMConfig,
                                    Seq2SeqConfig, TokenizerSpec)
from mmformer.models.decision_transformer import DecisionTransformer
from mmformer.models.dual_encoder import ContrastiveModel, ContrastiveOutput
from mmformer.models.masked_lm import MaskedLM, MLMHead
from mmformer.models.prefix_lm import PrefixLM
from mmformer.models.seq2seq import DecoderOutput, Seq2Seq

__all__ = ["CausalLM", "CausalLMConfig", "Classifier", "ClassifierConfig", "ClassifierFeatures", "ContrastiveConfig",
           "ContrastiveModel", "ContrastiveOutput", "DecisionTransformer", "DecisionTransformerConfig", "DecoderOutput",
           "DualEncoderConfig", "MLMHead", "MaskedLM", "MaskedLMConfig", "ModelConfig", "MultiTaskConfig", "PrefixLM",
           "PrefixLMConfig", "Seq2Seq", "Seq2SeqConfig", "TokenizerSpec", "build", "config_from_dict", "config_to_dict"]

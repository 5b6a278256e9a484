"""Plain ``nn.Module`` models, usable, testable and exportable without Lightning.

The task modules in :mod:`mmformer.tasks` wrap them with losses, metrics and logging.
``mmformer.models.timm_weights`` (timm ViT → :class:`Classifier`) is imported on demand: it needs timm's
model zoo.
"""

from mmformer.models.causal_lm import CausalLM
from mmformer.models.classifier import Classifier, ClassifierFeatures
from mmformer.models.decision_transformer import DecisionTransformer
from mmformer.models.dual_encoder import ContrastiveModel, ContrastiveOutput
from mmformer.models.masked_lm import MaskedLM, MLMHead
from mmformer.models.prefix_lm import PrefixLM
from mmformer.models.seq2seq import DecoderOutput, Seq2Seq

__all__ = ["CausalLM", "Classifier", "ClassifierFeatures", "ContrastiveModel", "ContrastiveOutput",
           "DecisionTransformer", "DecoderOutput", "MLMHead", "MaskedLM", "PrefixLM",
           "Seq2Seq"]

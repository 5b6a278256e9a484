"""Lightning task modules: losses, metrics, generation and logging around the plain models of
:mod:`mmformer.models`."""

from mmformer.tasks.classification import ClassificationTask
from mmformer.tasks.contrastive import ContrastiveTask
from mmformer.tasks.decision_transformer import DecisionTransformerTask
from mmformer.tasks.finetuning import FineTuning
from mmformer.tasks.optim import OptimConfig, build_optimizer
from mmformer.tasks.prefix_lm import PrefixLMTask
from mmformer.tasks.seq2seq import Seq2SeqTask

__all__ = ["ClassificationTask", "ContrastiveTask", "DecisionTransformerTask", "FineTuning", "OptimConfig", "PrefixLMTask",
           "Seq2SeqTask",
           "build_optimizer"]

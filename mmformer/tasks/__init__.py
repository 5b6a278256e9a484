"""Lightning task modules: losses, metrics, generation and logging around plain ``nn.Module`` models."""

from mmformer.tasks.classification import ClassificationTask, Classifier
from mmformer.tasks.contrastive import ContrastiveModel, ContrastiveTask
from mmformer.tasks.decision_transformer import DecisionTransformer, DecisionTransformerTask
from mmformer.tasks.optim import OptimConfig, build_optimizer
from mmformer.tasks.seq2seq import Seq2SeqTask

__all__ = ["ClassificationTask", "Classifier", "ContrastiveModel", "ContrastiveTask", "DecisionTransformer", "DecisionTransformerTask", "OptimConfig",
           "Seq2SeqTask", "build_optimizer"]

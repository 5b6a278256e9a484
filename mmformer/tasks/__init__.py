"""Lightning task modules: losses, metrics, generation and logging around plain ``nn.Module`` models."""

from mmformer.tasks.classification import ClassificationTask, Classifier
from mmformer.tasks.optim import OptimConfig, build_optimizer

__all__ = ["ClassificationTask", "Classifier", "OptimConfig", "build_optimizer"]

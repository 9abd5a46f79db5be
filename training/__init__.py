"""Stage-B training: pair datasets, samplers, losses, the trainer and evaluation."""

from training.data import TrainingData, load_training_data
from training.trainer import FitResult, TrainConfig, TrainResult, evaluate_model, fit, train_model

__all__ = [
    "FitResult",
    "TrainConfig",
    "TrainResult",
    "TrainingData",
    "evaluate_model",
    "fit",
    "load_training_data",
    "train_model",
]

"""Stage-B training: pair datasets, samplers, losses, the training loop, the run and evaluation."""

from training.config import TrainConfig
from training.data import TrainingData, load_training_data
from training.loop import FitResult, fit
from training.model_evaluation import evaluate_model
from training.run import TrainResult, train_model

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

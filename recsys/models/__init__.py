"""Stage B: fusion similarity models and their versioned registry."""

from recsys.models.config import ModelConfig
from recsys.models.fusion import FusionModel, ModelInputs
from recsys.models.inputs import build_inputs, input_dims, random_window
from recsys.models.registry import (
    Embedder,
    ModelNotFound,
    ModelRejected,
    NoActiveModel,
    activate_model,
    list_models,
    load_embedder,
    load_model,
    save_model,
)

__all__ = [
    "Embedder",
    "FusionModel",
    "ModelConfig",
    "ModelInputs",
    "ModelNotFound",
    "ModelRejected",
    "NoActiveModel",
    "activate_model",
    "build_inputs",
    "input_dims",
    "list_models",
    "load_embedder",
    "load_model",
    "random_window",
    "save_model",
]

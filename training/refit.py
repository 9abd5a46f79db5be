"""Gate, then refit: once the model gate has scored a model trained without its held-out videos,
train again on all the signal for the epochs the gated run chose, and serve that model.

Holding out a fifth of the paired videos costs a fifth of the training signal, and on small
catalogs that is most of what the model could learn (``bench/quality.py``, cold start); the
gate's verdict, measured on the held-out model, stands for the refitted one (same seed and
settings, more data).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

import torch

from recsys.features import VideoFeatures
from training.config import TrainConfig
from training.data import TrainingData
from training.loop import FitResult, fit


def refit_epochs(gated: FitResult) -> int:
    """The epochs a refit runs: the gated run's best epoch + 1; 0 when no epoch beat the
    content features (``best_epoch`` -1), which is never refitted."""
    return max(gated.best_epoch + 1, 0)


def refit(
    config: TrainConfig,
    data: TrainingData,
    gated: FitResult,
    *,
    device: torch.device | None = None,
    catalog: Sequence[VideoFeatures] | None = None,
) -> FitResult | None:
    """Retrain on ``data`` (all the signal, held-out videos included) for the gated run's
    chosen epochs with the same seed and settings, keeping the last epoch; None when the gated
    run kept the untrained model (nothing to refit). ``catalog``: default ``data.features``."""
    epochs = refit_epochs(gated)
    if epochs < 1:
        return None
    run = replace(config, epochs=epochs, patience=epochs, resume=False)
    return fit(
        run,
        data,
        None,
        device=device,
        catalog=data.features if catalog is None else catalog,
        keep_last=True,
    )

"""The error training and evaluation raise for data or options that cannot train a model."""

from __future__ import annotations

from recsys.errors import UserError


class TrainingError(UserError, ValueError):
    """The catalog or the options cannot train (or evaluate) a model; the message says what to
    do. Still a ``ValueError`` for callers that catch that."""

"""Errors of the tags classifier."""

from __future__ import annotations

from recsys.errors import ConflictError, NotFoundError, UserError


class TagsError(UserError):
    """Labels or inputs the tags classifier cannot use; the message says what to fix."""


class NoTagsModel(NotFoundError):
    """No tags model has been trained in this home yet (`recsys tags train`)."""


class TagsModelMismatch(ConflictError):
    """The tags model was trained on inputs this home no longer has (another extractor or
    stage-B model version); the message says to retrain it."""

"""Errors of the index package; each message says which index and what to do about it.

Every class derives from :class:`recsys.errors.RecsysError` (via :class:`RecsysIndexError`) and,
where the user can act on it, from the matching kind of :mod:`recsys.errors`: a version that does
not exist is a :class:`~recsys.errors.NotFoundError`, nothing published yet a
:class:`~recsys.errors.ConflictError`, a refused build or activation a
:class:`~recsys.errors.UserError`. The kind comes first among the bases, so a handler that maps
error kinds (the API's table) sees it before :class:`IndexLoadError`.
"""

from __future__ import annotations

from recsys.errors import ConflictError, NotFoundError, RecsysError, UserError


class RecsysIndexError(RecsysError):
    """Base class of every index error (not named IndexError, which is a builtin)."""


class IndexLoadError(RecsysIndexError):
    """A published index cannot be served: missing, corrupt, or inconsistent with its manifest."""


class IndexNotFoundError(NotFoundError, IndexLoadError):
    """The index version (or its directory) asked for does not exist."""


class NoActiveIndex(ConflictError, IndexLoadError):
    """Nothing is published yet, so there is no active index to show or update."""


class InvalidIndexVersion(UserError, RecsysIndexError, ValueError):
    """A string that cannot name an index version (e.g. ``../x``); also a ValueError."""


class IndexBuildError(UserError, RecsysIndexError):
    """An index could not be built from the embeddings (no model, no vectors, bad options)."""


class RecallTooLow(IndexBuildError):
    """The recall gate refused a build or update: no search setting reached the required recall."""

    def __init__(self, message: str, *, recall: float, min_recall: float, version: str) -> None:
        super().__init__(message)
        self.recall = recall
        self.min_recall = min_recall
        self.version = version


class StaleIndexBuild(IndexBuildError):
    """A build was not published because the served index holds newer embeddings (a build that
    started earlier finished later); the served index is unchanged. ``version`` is the build
    that was kept aside (``recsys index activate VERSION --force`` serves it anyway)."""

    def __init__(self, message: str, *, version: str, served: str) -> None:
        super().__init__(message)
        self.version = version
        self.served = served


class IndexActivationError(UserError, IndexLoadError):
    """``activate`` refused a version; the previously active index stays in place."""


class UnknownIndexVersion(IndexNotFoundError, IndexActivationError):
    """``activate`` was asked for a version that does not exist (both kinds at once)."""

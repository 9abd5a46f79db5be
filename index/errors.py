"""Errors of the index package; each message says which index and what to do about it."""

from __future__ import annotations


class RecsysIndexError(RuntimeError):
    """Base class of every index error (not named IndexError, which is a builtin)."""


class IndexLoadError(RecsysIndexError):
    """A published index cannot be served: missing, corrupt, or inconsistent with its manifest."""


class IndexBuildError(RecsysIndexError):
    """An index could not be built from the embeddings (no model, no vectors, bad options)."""


class RecallTooLow(IndexBuildError):
    """The recall gate refused a build: no search setting reached the required recall@10."""

    def __init__(self, message: str, *, recall: float, min_recall: float, version: str) -> None:
        super().__init__(message)
        self.recall = recall
        self.min_recall = min_recall
        self.version = version


class IndexActivationError(IndexLoadError):
    """``activate`` refused a version; the previously active index stays in place."""

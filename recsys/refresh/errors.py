"""The refresh's own error, in a module of its own so that the job and its engines all import
it without importing each other."""

from __future__ import annotations

from recsys.errors import UserError


class RefreshError(UserError, RuntimeError):
    """The run cannot start (no such model, no active model, mismatched extractor, another run
    holds the lock, a missing extra); the message says what to do. Still a ``RuntimeError`` for
    callers that catch that."""

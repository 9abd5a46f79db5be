"""The one error contract of every package.

* :class:`RecsysError` is the root of every error the engine raises on purpose (a bad file, a
  missing model, a refused index). The CLI prints such an error as one line and exits 1; the API
  maps each subclass to an HTTP status in one table (``api.errors``).
* :class:`UserError` is the kind a user can fix; its message says what to do.

Anything else (a shape error, CUDA out of memory) is a bug: it is never caught by these handlers
and keeps its traceback.
"""

from __future__ import annotations


class RecsysError(Exception):
    """Base class of every deliberate error of recsys, training, index and api."""


class UserError(RecsysError):
    """An error the user can fix (bad option, missing input, wrong state); says what to do."""


class NotFoundError(UserError):
    """Something asked for by name or id does not exist (a video, a model, an index version)."""


class ConflictError(UserError):
    """The request is valid but the current state refuses it (e.g. no active model yet)."""


class ResourceError(RecsysError):
    """The machine refused what a command needs (a full disk, an unreachable or misconfigured
    database): neither a bug nor the input's fault. The message names what failed and what to
    do, and never a secret."""

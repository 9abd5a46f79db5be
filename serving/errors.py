"""Errors of a query: domain facts with the fields an answer shows, never an HTTP status (the
API's table maps each class to one, along its MRO)."""

from __future__ import annotations

from recsys.errors import ConflictError, NotFoundError, RecsysError, UserError


class ServingError(RecsysError):
    """A deliberate error about a query; its fields fill the API's error body."""

    def __init__(
        self,
        detail: str,
        *,
        video_id: str | None = None,
        status: str | None = None,
        reason: str | None = None,
    ) -> None:
        super().__init__(detail)
        self.detail = detail
        self.video_id = video_id
        self.status = status
        self.reason = reason


class WouldBlock(Exception):  # noqa: N818 - a signal to the caller, not a failure
    """A plan run inline (on the event loop) needs data that is not in memory yet (the feature
    cache, the database): run it again in a thread, where it may wait for them."""


class VideoNotFound(ServingError, NotFoundError):
    """No catalog video has this ``video_id``."""


class VideoNotServed(ServingError, ConflictError):
    """The video is in the catalog but not in the served index (failed, deleted, not embedded)."""


class NoCowatchGraph(ServingError, ConflictError):
    """Collaborative neighbours were asked of an index published without a co-watch graph."""


class StalePageToken(ServingError, ConflictError):
    """A page token made by another index version: its list no longer exists."""


class InvalidQuery(ServingError, UserError):
    """A well-formed query that cannot be answered (e.g. examples that cancel out)."""


__all__ = [
    "InvalidQuery",
    "NoCowatchGraph",
    "ServingError",
    "StalePageToken",
    "VideoNotFound",
    "VideoNotServed",
    "WouldBlock",
]

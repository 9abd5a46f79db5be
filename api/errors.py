"""The API's errors and the one table that turns every deliberate error into an HTTP answer.

Errors carry no HTTP status: the search and recommendation code raises domain errors
(:class:`VideoNotFound` is a :class:`~recsys.errors.NotFoundError`, :class:`VideoNotServed` a
:class:`~recsys.errors.ConflictError`, ...), and :data:`HTTP_ERRORS` maps each class to its status
and error code, walked along the exception's MRO so that any :class:`~recsys.errors.RecsysError`
of a lower layer finds the row of its nearest ancestor. A client never sees a 500 for what it
sent; unexpected errors are logged with context and answered 500 with a generic body.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout

from index.errors import IndexLoadError
from recsys.errors import ConflictError, NotFoundError, RecsysError, UserError
from recsys.media.errors import MediaError

log = logging.getLogger(__name__)

RETRY_SOON = {"Retry-After": "1"}
INTERNAL_BODY = {"error": "internal", "detail": "internal error; see the server log"}


class ApiError(RecsysError):
    """A deliberate error of the api package; its fields fill :class:`api.schemas.ErrorBody`."""

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


# ------------------------------------------------------------------ domain facts
class VideoNotFound(ApiError, NotFoundError):
    """No catalog video has this ``video_id``."""


class MissingFile(ApiError, NotFoundError):
    """The video exists but its file (or thumbnail) is not available on this server."""


class VideoNotServed(ApiError, ConflictError):
    """The video is in the catalog but not in the served index (failed, deleted, not embedded)."""


class InvalidQuery(ApiError, UserError):
    """A well-formed query that cannot be answered (e.g. examples that cancel out)."""


class MediaRejected(ApiError, UserError):
    """An uploaded file that cannot be decoded or embedded; ``detail`` says why."""


class ServiceUnavailable(ApiError):
    """No index loaded, database down, model not loadable: the client may retry later."""


# ------------------------------------------------------------ HTTP-level refusals
class UnsupportedMediaType(ApiError, UserError):
    """An upload whose name or declared type is not a video."""


class UploadTooLarge(ApiError, UserError):
    """An upload over ``RECSYS_UPLOAD_MAX_BYTES``."""


class Unauthorized(ApiError, UserError):
    """A missing or wrong admin bearer token."""


# ------------------------------------------------------------------ the table
@dataclass(frozen=True)
class HttpError:
    """How one error class is answered."""

    status_code: int
    code: str
    headers: dict[str, str] = field(default_factory=dict)


HTTP_ERRORS: dict[type[Exception], HttpError] = {
    VideoNotFound: HttpError(404, "video_not_found"),
    MissingFile: HttpError(404, "not_found"),
    NotFoundError: HttpError(404, "not_found"),
    VideoNotServed: HttpError(409, "video_not_embedded"),
    ConflictError: HttpError(409, "conflict"),
    Unauthorized: HttpError(401, "unauthorized", {"WWW-Authenticate": "Bearer"}),
    UploadTooLarge: HttpError(413, "upload_too_large"),
    UnsupportedMediaType: HttpError(415, "unsupported_media_type"),
    InvalidQuery: HttpError(422, "invalid_query"),
    MediaRejected: HttpError(422, "media_rejected"),
    MediaError: HttpError(422, "media_rejected"),
    UserError: HttpError(400, "bad_request"),
    ServiceUnavailable: HttpError(503, "unavailable", RETRY_SOON),
    IndexLoadError: HttpError(503, "unavailable", RETRY_SOON),
    RecsysError: HttpError(500, "internal"),
}
"""Exception class → answer; an error takes the row of the first class in its MRO."""


def http_error(error: BaseException) -> HttpError | None:
    """The row of :data:`HTTP_ERRORS` for ``error`` (None: not a deliberate error)."""
    for cls in type(error).__mro__:
        row = HTTP_ERRORS.get(cls)
        if row is not None:
            return row
    return None


def error_body(error: BaseException, code: str) -> dict[str, Any]:
    return {
        "error": code,
        "detail": getattr(error, "detail", None) or str(error),
        "video_id": getattr(error, "video_id", None),
        "status": getattr(error, "status", None),
        "reason": getattr(error, "reason", None),
    }


def error_response(error: Exception) -> JSONResponse:
    """The JSON answer of a deliberate error (500 with a generic body if it has no row)."""
    row = http_error(error)
    if row is None or row.status_code == 500:
        return JSONResponse(INTERNAL_BODY, status_code=500)
    return JSONResponse(
        error_body(error, row.code), status_code=row.status_code, headers=row.headers or None
    )


def _is_connection_problem(error: DBAPIError) -> bool:
    return isinstance(error, OperationalError) or bool(error.connection_invalidated)


def install_handlers(app: FastAPI) -> None:
    """Map deliberate errors (by the table), database outages and anything unexpected to JSON."""

    async def deliberate_error(request: Request, error: Exception) -> JSONResponse:
        row = http_error(error)
        if row is None or row.status_code == 500:
            log.error(
                "unhandled %s during %s %s: %s",
                type(error).__name__,
                request.method,
                request.url.path,
                error,
                exc_info=error,
            )
        return error_response(error)

    async def database_error(request: Request, error: Exception) -> JSONResponse:
        assert isinstance(error, DBAPIError | PoolTimeout)
        if isinstance(error, PoolTimeout) or _is_connection_problem(error):
            log.warning(
                "database unavailable during %s %s: %s", request.method, request.url.path, error
            )
            return error_response(
                ServiceUnavailable(
                    "the metadata database is unreachable; retry shortly "
                    f"({type(error.orig if isinstance(error, DBAPIError) else error).__name__})"
                )
            )
        log.exception("database error during %s %s", request.method, request.url.path)
        return JSONResponse(
            {"error": "internal", "detail": "database error; see the server log"},
            status_code=500,
        )

    async def unexpected(request: Request, error: Exception) -> JSONResponse:
        log.exception("unhandled error during %s %s", request.method, request.url.path)
        return JSONResponse(INTERNAL_BODY, status_code=500)

    async def invalid_request(_request: Request, error: Exception) -> JSONResponse:
        assert isinstance(error, RequestValidationError)
        errors = [
            {
                "loc": [str(p) if not isinstance(p, int) else p for p in e.get("loc", ())],
                "msg": str(e.get("msg", "")),
                "type": str(e.get("type", "")),
            }
            for e in error.errors()
        ]
        summary = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in errors[:5])
        return JSONResponse(
            {
                "error": "invalid_request",
                "detail": summary or "invalid request",
                "video_id": None,
                "status": None,
                "reason": None,
                "errors": errors,
            },
            status_code=422,
        )

    app.add_exception_handler(RequestValidationError, invalid_request)
    for cls in HTTP_ERRORS:
        app.add_exception_handler(cls, deliberate_error)
    app.add_exception_handler(DBAPIError, database_error)
    app.add_exception_handler(PoolTimeout, database_error)
    app.add_exception_handler(Exception, unexpected)

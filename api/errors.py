"""Errors the API raises on purpose, and the handlers that turn every failure into a clear
status: a client never sees a 500 for what it sent (unexpected errors are logged with context
and answered 500 with a generic body)."""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout

log = logging.getLogger(__name__)


class ApiError(Exception):
    """An error with an HTTP status and a body of :class:`api.schemas.ErrorBody`."""

    status_code = 400
    code = "bad_request"

    def __init__(
        self,
        detail: str,
        *,
        video_id: str | None = None,
        status: str | None = None,
        reason: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(detail)
        self.detail = detail
        self.video_id = video_id
        self.status = status
        self.reason = reason
        self.headers = headers

    def body(self) -> dict[str, str | None]:
        return {
            "error": self.code,
            "detail": self.detail,
            "video_id": self.video_id,
            "status": self.status,
            "reason": self.reason,
        }


class VideoNotFound(ApiError):
    status_code = 404
    code = "video_not_found"


class NotFound(ApiError):
    status_code = 404
    code = "not_found"


class NotServed(ApiError):
    """The video is in the catalog but not in the served index (failed, deleted, not embedded)."""

    status_code = 409
    code = "video_not_embedded"


class InvalidQuery(ApiError):
    status_code = 422
    code = "invalid_query"


class MediaRejected(ApiError):
    status_code = 422
    code = "media_rejected"


class UnsupportedMediaType(ApiError):
    status_code = 415
    code = "unsupported_media_type"


class UploadTooLarge(ApiError):
    status_code = 413
    code = "upload_too_large"


class Unauthorized(ApiError):
    status_code = 401
    code = "unauthorized"


class ServiceUnavailable(ApiError):
    """No index loaded, database down, model not loadable: the client may retry later."""

    status_code = 503
    code = "unavailable"


def error_response(error: ApiError) -> JSONResponse:
    return JSONResponse(error.body(), status_code=error.status_code, headers=error.headers)


def _is_connection_problem(error: DBAPIError) -> bool:
    return isinstance(error, OperationalError) or bool(error.connection_invalidated)


def install_handlers(app: FastAPI) -> None:
    """Map API errors, database outages and anything unexpected to JSON bodies."""

    async def api_error(_request: Request, error: Exception) -> JSONResponse:
        assert isinstance(error, ApiError)
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
                    f"({type(error.orig if isinstance(error, DBAPIError) else error).__name__})",
                    headers={"Retry-After": "1"},
                )
            )
        log.exception("database error during %s %s", request.method, request.url.path)
        return JSONResponse(
            {"error": "internal", "detail": "database error; see the server log"},
            status_code=500,
        )

    async def unexpected(request: Request, error: Exception) -> JSONResponse:
        log.exception("unhandled error during %s %s", request.method, request.url.path)
        return JSONResponse(
            {"error": "internal", "detail": "internal error; see the server log"}, status_code=500
        )

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
    app.add_exception_handler(ApiError, api_error)
    app.add_exception_handler(DBAPIError, database_error)
    app.add_exception_handler(PoolTimeout, database_error)
    app.add_exception_handler(Exception, unexpected)

"""The API's errors and the one table that turns every deliberate error into an HTTP answer.

Errors carry no HTTP status: the serving layer raises domain errors (:mod:`serving.errors`:
:class:`VideoNotFound` is a :class:`~recsys.errors.NotFoundError`, :class:`VideoNotServed` a
:class:`~recsys.errors.ConflictError`, ...), the routes a few of their own here, and
:data:`HTTP_ERRORS` maps each class to its status and error code, walked along the exception's
MRO so that any :class:`~recsys.errors.RecsysError` of a lower layer finds the row of its nearest
ancestor. A client never sees a 500 for what it
sent; unexpected errors are logged with context and answered 500 with a generic body.

Every error answer carries a request id (``X-Request-ID`` header and ``request_id`` in the body;
a sane id sent by the client or a proxy is kept) and the server log line with the full story
carries the same id. What an anonymous client reads is :func:`public_text`: the reason stays
("video 'x' is failed", "the upload cannot be decoded: no video stream"), but filesystem paths,
URIs, hosts and database errors are replaced by placeholders. A request with the admin bearer
token gets the details unredacted.
"""

from __future__ import annotations

import hmac
import logging
import re
import uuid
from collections.abc import Mapping, MutableMapping
from dataclasses import dataclass, field
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from starlette.exceptions import HTTPException as StarletteHTTPException

from index.errors import IndexLoadError
from recsys.errors import ConflictError, NotFoundError, RecsysError, ResourceError, UserError
from recsys.media.errors import MediaError
from serving.errors import (
    InvalidQuery,
    NoCowatchGraph,
    ServingError,
    StalePageToken,
    VideoNotFound,
    VideoNotServed,
)

log = logging.getLogger(__name__)

RETRY_SOON = {"Retry-After": "1"}
INTERNAL_BODY = {"error": "internal", "detail": "internal error; see the server log"}
REQUEST_ID_HEADER = "X-Request-ID"


class ApiError(ServingError):
    """A deliberate error of the api package itself (like the serving layer's, a
    :class:`~serving.errors.ServingError`); its fields fill :class:`api.schemas.ErrorBody`."""


# ------------------------------------------------------------------ domain facts
class MissingFile(ApiError, NotFoundError):
    """The video exists but its file (or thumbnail) is not available on this server."""


class MediaRejected(ApiError, UserError):
    """An uploaded file that cannot be decoded or embedded; ``detail`` says why."""


class ServiceUnavailable(ApiError):
    """No index loaded, database down, model not loadable: the client may retry later."""


# ------------------------------------------------------------ HTTP-level refusals
class UnsupportedMediaType(ApiError, UserError):
    """An upload whose name or declared type is not a video."""


class UploadTooLarge(ApiError, UserError):
    """An upload over ``RECSYS_UPLOAD_MAX_BYTES``."""


class RequestTooLarge(ApiError, UserError):
    """A request body (any route but the upload) over ``RECSYS_API_MAX_BODY_BYTES``."""


class UploadTimeout(ApiError, UserError):
    """An upload whose body did not arrive within ``RECSYS_API_UPLOAD_RECEIVE_TIMEOUT_S``."""


class Overloaded(ServiceUnavailable):
    """This worker already runs as many searches or uploads as it may: retry in a moment."""


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
    NoCowatchGraph: HttpError(409, "no_cowatch_graph"),
    StalePageToken: HttpError(409, "stale_page_token"),
    ConflictError: HttpError(409, "conflict"),
    Unauthorized: HttpError(401, "unauthorized", {"WWW-Authenticate": "Bearer"}),
    UploadTooLarge: HttpError(413, "upload_too_large"),
    RequestTooLarge: HttpError(413, "request_too_large"),
    UploadTimeout: HttpError(408, "request_timeout"),
    UnsupportedMediaType: HttpError(415, "unsupported_media_type"),
    InvalidQuery: HttpError(422, "invalid_query"),
    MediaRejected: HttpError(422, "media_rejected"),
    MediaError: HttpError(422, "media_rejected"),
    UserError: HttpError(400, "bad_request"),
    Overloaded: HttpError(503, "overloaded", RETRY_SOON),
    ServiceUnavailable: HttpError(503, "unavailable", RETRY_SOON),
    IndexLoadError: HttpError(503, "unavailable", RETRY_SOON),
    ResourceError: HttpError(503, "unavailable", RETRY_SOON),  # a database gone, a full disk
    RecsysError: HttpError(500, "internal"),
}
"""Exception class → answer; an error takes the row of the first class in its MRO."""

FRAMEWORK_CODES = {400: "bad_request", 404: "not_found", 405: "method_not_allowed"}
"""Error codes of the refusals the web framework makes itself (an unparsable body, no route)."""


def http_error(error: BaseException) -> HttpError | None:
    """The row of :data:`HTTP_ERRORS` for ``error`` (None: not a deliberate error)."""
    for cls in type(error).__mro__:
        row = HTTP_ERRORS.get(cls)
        if row is not None:
            return row
    return None


# ------------------------------------------------------------------ what clients may read
_CLIENT_REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,64}")
_URI = re.compile(r"\b[A-Za-z][A-Za-z0-9+.-]*://[^\s'\"`<>]*")
# An absolute path (POSIX, home-relative or Windows) where a word starts: "/etc/passwd",
# "'/srv/media/a b.mp4'" (up to the quote), "~/Videos/x", "C:\\media\\x.mp4".
_PATH = re.compile(r"(?<![^\s'\"`(\[=,])(?:~|[A-Za-z]:)?[/\\](?=[^\s/\\'\"`])[^\s'\"`<>)\],;]*")
_QUOTED_PATH = re.compile(r"(?<=['\"])(?:~|[A-Za-z]:)?[/\\](?=[^\s/\\'\"])[^'\"\n]*(?=['\"])")
_HOST = re.compile(r"\b\d{1,3}(?:\.\d{1,3}){3}(?::\d+)?\b|\[[0-9A-Fa-f:]+\](?::\d+)?")
_CREDENTIALS = re.compile(r"\b(?:host|hostaddr|user|password|dbname|port)=\S+", re.IGNORECASE)
_DATABASE_ERROR = re.compile(
    r"\[SQL:|\[parameters:|\(psycopg[.\w]*\)|\(sqlite3\.|\(Background on this error"
    r"|connection to server|password authentication|\bFATAL:|\bdatabase \"[^\"]*\" does not"
    r"|\brole \"[^\"]*\"|\b(?:SELECT|INSERT|UPDATE|DELETE)\b.*\b(?:FROM|INTO|SET|WHERE)\b"
)
DATABASE_DETAIL = "the metadata database failed; the server log has the details"


def public_text(text: str | None) -> str | None:
    """``text`` without what an anonymous client must not read: database errors (the whole
    text), URIs and database URLs, absolute paths, hosts and connection parameters."""
    if not text:
        return text
    if _DATABASE_ERROR.search(text):
        return DATABASE_DETAIL
    text = _URI.sub("<uri>", text)
    text = _QUOTED_PATH.sub("<path>", text)
    text = _PATH.sub("<path>", text)
    text = _CREDENTIALS.sub("<redacted>", text)
    return _HOST.sub("<host>", text)


def request_id_of(scope: MutableMapping[str, Any]) -> str:
    """The id of one request: the client's (or proxy's) ``X-Request-ID`` when it is a short
    token, else a new one; the same for every call on the same request."""
    state = scope.setdefault("state", {})
    known = state.get("request_id") if isinstance(state, Mapping) else None
    if known:
        return str(known)
    request_id = ""
    for name, value in scope.get("headers") or ():
        if name == b"x-request-id":
            given = value.decode("latin-1").strip()
            if _CLIENT_REQUEST_ID.fullmatch(given):
                request_id = given
            break
    request_id = request_id or uuid.uuid4().hex
    if isinstance(state, MutableMapping):
        state["request_id"] = request_id
    return request_id


def token_matches(expected: str | None, authorization: str | None) -> bool:
    """Constant-time check of ``Authorization: Bearer <expected>`` (False when none is set)."""
    scheme, _, given = (authorization or "").partition(" ")
    return (
        bool(expected)
        and scheme.lower() == "bearer"
        and hmac.compare_digest(given.strip().encode(), (expected or "").encode())
    )


def is_admin(scope: Mapping[str, Any]) -> bool:
    """Whether the request carries the admin bearer token of its app (it may read details)."""
    app = scope.get("app")
    settings = getattr(getattr(app, "state", None), "settings", None)
    expected = getattr(settings, "admin_token", None)
    if not expected:
        return False
    for name, value in scope.get("headers") or ():
        if name == b"authorization":
            return token_matches(expected, value.decode("latin-1"))
    return False


def error_body(
    error: BaseException, code: str, *, request_id: str | None = None, reveal: bool = False
) -> dict[str, Any]:
    """The fields of :class:`api.schemas.ErrorBody`; ``detail`` and ``reason`` pass
    :func:`public_text` unless ``reveal`` (an admin asked)."""
    detail = getattr(error, "detail", None) or str(error)
    reason = getattr(error, "reason", None)
    return {
        "error": code,
        "detail": detail if reveal else public_text(detail),
        "video_id": getattr(error, "video_id", None),
        "status": getattr(error, "status", None),
        "reason": reason if reveal else public_text(reason),
        "request_id": request_id,
    }


def _with_request_id(headers: Mapping[str, str] | None, request_id: str) -> dict[str, str]:
    return {**(headers or {}), REQUEST_ID_HEADER: request_id}


def error_response(
    error: Exception, request_id: str | None = None, *, reveal: bool = False
) -> JSONResponse:
    """The JSON answer of a deliberate error (500 with a generic body if it has no row), with
    its request id (a new one when none is given)."""
    request_id = request_id or uuid.uuid4().hex
    row = http_error(error)
    if row is None or row.status_code == 500:
        return JSONResponse(
            {**INTERNAL_BODY, "request_id": request_id},
            status_code=500,
            headers=_with_request_id(None, request_id),
        )
    return JSONResponse(
        error_body(error, row.code, request_id=request_id, reveal=reveal),
        status_code=row.status_code,
        headers=_with_request_id(row.headers, request_id),
    )


def scope_error_response(scope: MutableMapping[str, Any], error: Exception) -> JSONResponse:
    """:func:`error_response` for a request (its id, details for an admin), logged with the id
    when the client's copy was redacted; for handlers and middleware alike."""
    request_id = request_id_of(scope)
    reveal = is_admin(scope)
    response = error_response(error, request_id, reveal=reveal)
    row = http_error(error)
    if row is not None and row.status_code != 500:
        detail = getattr(error, "detail", None) or str(error)
        reason = getattr(error, "reason", None)
        redacted = not reveal and (public_text(detail) != detail or public_text(reason) != reason)
        log.log(
            logging.INFO if redacted or row.status_code >= 500 else logging.DEBUG,
            "request %s: %s %s -> %d %s: %s%s",
            request_id,
            scope.get("method"),
            scope.get("path"),
            row.status_code,
            row.code,
            detail,
            f" (reason: {reason})" if reason else "",
        )
    return response


def _is_connection_problem(error: DBAPIError) -> bool:
    return isinstance(error, OperationalError) or bool(error.connection_invalidated)


def install_handlers(app: FastAPI) -> None:
    """Map deliberate errors (by the table), database outages and anything unexpected to JSON."""

    async def deliberate_error(request: Request, error: Exception) -> JSONResponse:
        row = http_error(error)
        if row is None or row.status_code == 500:
            log.error(
                "request %s: unhandled %s during %s %s: %s",
                request_id_of(request.scope),
                type(error).__name__,
                request.method,
                request.url.path,
                error,
                exc_info=error,
            )
        return scope_error_response(request.scope, error)

    async def database_error(request: Request, error: Exception) -> JSONResponse:
        assert isinstance(error, DBAPIError | PoolTimeout)
        request_id = request_id_of(request.scope)
        if isinstance(error, PoolTimeout) or _is_connection_problem(error):
            log.warning(
                "request %s: database unavailable during %s %s: %s",
                request_id,
                request.method,
                request.url.path,
                error,
            )
            return scope_error_response(
                request.scope,
                ServiceUnavailable(
                    "the metadata database is unreachable; retry shortly "
                    f"({type(error.orig if isinstance(error, DBAPIError) else error).__name__})"
                ),
            )
        log.exception(
            "request %s: database error during %s %s", request_id, request.method, request.url.path
        )
        return JSONResponse(
            {
                "error": "internal",
                "detail": "database error; see the server log",
                "request_id": request_id,
            },
            status_code=500,
            headers=_with_request_id(None, request_id),
        )

    async def unexpected(request: Request, error: Exception) -> JSONResponse:
        request_id = request_id_of(request.scope)
        log.exception(
            "request %s: unhandled error during %s %s",
            request_id,
            request.method,
            request.url.path,
        )
        return JSONResponse(
            {**INTERNAL_BODY, "request_id": request_id},
            status_code=500,
            headers=_with_request_id(None, request_id),
        )

    async def invalid_request(request: Request, error: Exception) -> JSONResponse:
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
        request_id = request_id_of(request.scope)
        return JSONResponse(
            {
                "error": "invalid_request",
                "detail": summary or "invalid request",
                "video_id": None,
                "status": None,
                "reason": None,
                "request_id": request_id,
                "errors": errors,
            },
            status_code=422,
            headers=_with_request_id(None, request_id),
        )

    async def framework_refusal(request: Request, error: Exception) -> JSONResponse:
        """The framework's own refusals (a body that cannot be parsed, no such route, a method
        the route lacks) in the same body as every other error, its headers (Allow) kept."""
        assert isinstance(error, StarletteHTTPException)
        request_id = request_id_of(request.scope)
        return JSONResponse(
            {
                "error": FRAMEWORK_CODES.get(error.status_code, "http_error"),
                "detail": str(error.detail),
                "request_id": request_id,
            },
            status_code=error.status_code,
            headers=_with_request_id(error.headers, request_id),
        )

    app.add_exception_handler(RequestValidationError, invalid_request)
    app.add_exception_handler(StarletteHTTPException, framework_refusal)
    for cls in HTTP_ERRORS:
        app.add_exception_handler(cls, deliberate_error)
    app.add_exception_handler(DBAPIError, database_error)
    app.add_exception_handler(PoolTimeout, database_error)
    app.add_exception_handler(Exception, unexpected)


__all__ = [
    "HTTP_ERRORS",
    "ApiError",
    "InvalidQuery",
    "MediaRejected",
    "MissingFile",
    "NoCowatchGraph",
    "Overloaded",
    "ServiceUnavailable",
    "ServingError",
    "StalePageToken",
    "VideoNotFound",
    "VideoNotServed",
]

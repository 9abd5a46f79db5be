"""Routes documented by FastAPI like any other but answered by a handler that takes the request
itself and returns the response body already serialised: the hot ``GET /similar/{video_id}``.

FastAPI's per-request machinery (solving the endpoint's dependencies, validating the returned
data against the response model, then serialising it) cost more than the whole search on an IVF
index. Here the handler validates what it reads (the path parameter with the same pydantic type,
the query with the same model, :func:`api.deps.parse_query`) and writes plain data that already
has the response model's shape (:mod:`serving.present`), as JSON in one pydantic-core call. The
OpenAPI schema still comes from the endpoint's signature and the route's ``response_model``;
tests hold every served body to that model (it validates and serialises back to the same bytes).
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any

import pydantic_core
from fastapi import Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute
from pydantic import TypeAdapter, ValidationError
from starlette.routing import Match, Route
from starlette.types import Receive, Scope, Send

from api.schemas import VideoIdPath
from recsys.ids import unroutable_reason

Handler = Callable[[Request], Coroutine[Any, Any, Response]]

_VIDEO_ID: TypeAdapter[str] = TypeAdapter(VideoIdPath)


class FirstGet(Route):
    """A GET-only route placed first in the app's table, answered by ``handler`` without a
    wrapper per request: one regular expression decides, instead of the docs routes and the
    included routers (FastAPI matches each included router twice). Any other method on the
    path matches nothing here, so the documented route behind it answers as before (405 with
    its Allow header, or another route's match)."""

    def __init__(self, path: str, handler: Handler, *, name: str) -> None:
        super().__init__(path, handler, methods=["GET"], name=name, include_in_schema=False)
        self.methods = {"GET"}  # not HEAD: the documented route refuses it
        self.handler = handler

    def matches(self, scope: Scope) -> tuple[Match, Scope]:
        if scope["type"] != "http" or scope["method"] != "GET":
            return Match.NONE, {}
        match, child = super().matches(scope)
        if match != Match.FULL:
            return Match.NONE, {}
        child["route"] = self  # the metrics' route label (path_format)
        return match, child

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        response = await self.handler(Request(scope, receive, send))
        await response(scope, receive, send)


def direct_route(handler: Handler) -> type[APIRoute]:
    """An :class:`APIRoute` class whose requests go straight to ``handler`` (the endpoint given
    to the router only documents the route)."""

    class DirectRoute(APIRoute):
        def get_route_handler(self) -> Handler:
            return handler

    DirectRoute.__name__ = DirectRoute.__qualname__ = f"DirectRoute[{handler.__name__}]"
    return DirectRoute


def path_video_id(request: Request, name: str = "video_id") -> str:
    """The video id of the path, validated as :data:`api.schemas.VideoIdPath` (the same 422
    body as FastAPI's own path validation when it is not routable)."""
    video_id: str = request.path_params[name]
    if unroutable_reason(video_id) is None:
        return video_id
    try:
        return _VIDEO_ID.validate_python(video_id)
    except ValidationError as error:
        raise RequestValidationError(
            [{**e, "loc": ("path", name, *e["loc"])} for e in error.errors(include_url=False)]
        ) from None


def json_bytes(body: Any) -> bytes:
    """``body`` (plain data: dicts, lists, str, int, float, bool, None) as JSON; non-finite
    floats become null, as the response models write them."""
    return pydantic_core.to_json(body, inf_nan_mode="null")


def json_response(body: Any, status_code: int = 200) -> Response:
    """``body`` (plain data) as a JSON response (:func:`json_bytes`)."""
    return Response(json_bytes(body), status_code=status_code, media_type="application/json")


__all__ = ["FirstGet", "direct_route", "json_bytes", "json_response", "path_video_id"]

"""The fast lane: the hot ``GET /similar/{video_id}`` answered before the app's middleware.

A request passes through about ten ASGI layers (error handling, telemetry, body limits, the
request limits, metrics, the exception table, FastAPI's exit stack, the router) before its
route runs: about a tenth of a plain request's time in process, for nothing a plain request
needs. This middleware, inside only the layers FastAPI itself puts outermost, answers the
requests that run inline (a valid query of a served video, answered from memory) with the same
status, headers and body as the route, and records the same metrics; everything else (an
error, a search in a thread, a request with a body) goes down the app's stack untouched, where
the route answers it as before.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from starlette.datastructures import State
from starlette.routing import Match, Route
from starlette.types import ASGIApp, Receive, Scope, Send

from api import metrics
from api.upload import body_headers

Answer = Callable[[State, dict[str, str], bytes], bytes | None]
"""A route's inline answer: (app state, path parameters, raw query string) -> the JSON body of
a 200, or None when the route itself must answer (errors included)."""

JSON_TYPE = b"application/json"


class FastLane:
    """Pure ASGI middleware answering ``route``'s requests with ``answer`` where it can."""

    def __init__(self, app: ASGIApp, *, route: Route, answer: Answer) -> None:
        self.app = app
        self.route = route
        self.answer = answer
        self.prefix = route.path.split("{", 1)[0]  # a cheap test before the route's pattern
        self.template = route.path_format

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"].startswith(self.prefix):
            start = time.perf_counter()
            body = self._inline(scope)
            if body is not None:
                await send(
                    {
                        "type": "http.response.start",
                        "status": 200,
                        "headers": [
                            (b"content-length", str(len(body)).encode()),
                            (b"content-type", JSON_TYPE),
                        ],
                    }
                )
                await send({"type": "http.response.body", "body": body})
                metrics.record(self.template, "GET", 200, time.perf_counter() - start)
                return
        await self.app(scope, receive, send)

    def _inline(self, scope: Scope) -> bytes | None:
        if scope["method"] != "GET" or body_headers(scope) != (-1, False):
            return None  # a body is the request limits' to judge
        match, child = self.route.matches(scope)
        if match != Match.FULL:
            return None
        return self.answer(scope["app"].state, child["path_params"], scope["query_string"])


__all__ = ["Answer", "FastLane"]

"""Responses leave in one send (:mod:`api.transport`): uvicorn's httptools protocol driven
with raw request bytes over a recording transport, as uvicorn drives it from a socket."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route
from uvicorn import Config
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.server import ServerState

from api import uvicorn_runner
from api.transport import CoalescingHttpToolsProtocol, CoalescingTransport
from api.uvicorn_runner import HTTP_PROTOCOL
from recsys.settings import Settings

GET = b"GET /%s HTTP/1.1\r\nHost: test\r\n\r\n"


class RecordingTransport(asyncio.Transport):
    """What a socket would have been asked to send, one entry per write."""

    def __init__(self) -> None:
        super().__init__()
        self.writes: list[bytes] = []
        self.closed = False
        self.aborted = False

    def write(self, data: Any) -> None:
        assert not self.closed, "written after close"
        self.writes.append(bytes(data))

    def close(self) -> None:
        self.closed = True

    def abort(self) -> None:
        self.aborted = self.closed = True

    def is_closing(self) -> bool:
        return self.closed

    def get_write_buffer_size(self) -> int:
        return 0

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"peername": ("127.0.0.1", 5000), "sockname": ("127.0.0.1", 8000)}.get(name, default)

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass


async def _chunks() -> Any:
    for part in (b"one,", b"two,", b"three"):
        yield part
        await asyncio.sleep(0.01)  # each chunk in its own turn of the loop


def _similar(request: Request) -> Response:
    return JSONResponse({"results": ["v1", "v2"]})


def _stream(request: Request) -> Response:
    return StreamingResponse(_chunks(), media_type="text/plain")


APP = Starlette(routes=[Route("/similar", _similar), Route("/stream", _stream)])


async def _serve(protocol_class: type[HttpToolsProtocol], *requests: bytes) -> RecordingTransport:
    """Feed ``requests`` on one keep-alive connection and wait for every answer."""
    config = Config(APP, http="httptools", lifespan="off", log_level="warning")
    config.load()
    state = ServerState()
    protocol = protocol_class(config, state, {}, asyncio.get_running_loop())
    transport = RecordingTransport()
    protocol.connection_made(transport)
    for request in requests:
        protocol.data_received(request)
        for _ in range(200):
            await asyncio.sleep(0.005)
            if protocol.cycle is not None and protocol.cycle.response_complete and not state.tasks:
                break
        await asyncio.sleep(0.005)  # the end of the turn that completed it
    protocol.connection_lost(None)
    return transport


def test_a_response_leaves_in_one_send_where_uvicorn_makes_two() -> None:
    stock = asyncio.run(_serve(HttpToolsProtocol, GET % b"similar"))
    joined = asyncio.run(_serve(CoalescingHttpToolsProtocol, GET % b"similar"))
    assert len(stock.writes) == 2  # the head, then the body
    assert len(joined.writes) == 1
    assert joined.writes[0] == b"".join(stock.writes)
    assert joined.writes[0].startswith(b"HTTP/1.1 200 OK\r\n")
    assert joined.writes[0].endswith(b'{"results":["v1","v2"]}')


def test_keep_alive_requests_and_streamed_chunks_keep_their_order() -> None:
    requests = (GET % b"similar", GET % b"stream", GET % b"missing", GET % b"similar")
    stock = asyncio.run(_serve(HttpToolsProtocol, *requests))
    joined = asyncio.run(_serve(CoalescingHttpToolsProtocol, *requests))
    assert b"".join(joined.writes) == b"".join(stock.writes)
    assert b"".join(joined.writes).count(b"HTTP/1.1 ") == 4
    # a streamed body still leaves as it is made, not held to the end of the response
    assert len(joined.writes) > 3 and len(joined.writes) < len(stock.writes)


@pytest.mark.parametrize("ending", ["close", "write_eof", "set_protocol"])
def test_what_is_pending_is_sent_before_the_connection_ends_or_changes_hands(
    ending: str,
) -> None:
    async def scenario() -> RecordingTransport:
        inner = RecordingTransport()
        inner.write_eof = lambda: inner.writes.append(b"<eof>")  # type: ignore[method-assign]
        inner.set_protocol = lambda protocol: inner.writes.append(b"<handed>")  # type: ignore[method-assign]
        inner.close = lambda: inner.writes.append(b"<closed>")  # type: ignore[method-assign]
        transport = CoalescingTransport(inner, asyncio.get_running_loop())
        transport.write(b"head ")
        transport.write(bytearray(b"body"))
        assert inner.writes == [] and transport.get_write_buffer_size() == 9
        if ending == "set_protocol":
            transport.set_protocol(asyncio.Protocol())
        else:
            getattr(transport, ending)()
        await asyncio.sleep(0)  # the flush scheduled for the end of the turn finds nothing
        return inner

    inner = asyncio.run(scenario())
    assert inner.writes[0] == b"head body" and len(inner.writes) == 2


def test_an_abort_or_a_peer_gone_drops_what_is_pending() -> None:
    async def scenario(gone_by: str) -> RecordingTransport:
        inner = RecordingTransport()
        transport = CoalescingTransport(inner, asyncio.get_running_loop())
        transport.write(b"answer")
        if gone_by == "abort":
            transport.abort()
        else:
            inner.closed = True  # the client went away before the end of the turn
        await asyncio.sleep(0)
        return inner

    assert asyncio.run(scenario("abort")).writes == []
    assert asyncio.run(scenario("peer")).writes == []


@pytest.mark.parametrize(("setting", "expected"), [(None, HTTP_PROTOCOL), ("false", "httptools")])
def test_recsys_serve_writes_through_the_coalescing_protocol_unless_told_not_to(
    settings: Settings, monkeypatch: pytest.MonkeyPatch, setting: str | None, expected: str
) -> None:
    for name in ("RECSYS_HOME", "RECSYS_DATABASE_URL", "RECSYS_DB_MIGRATE", "OMP_NUM_THREADS"):
        monkeypatch.setenv(name, "placeholder")  # recorded, so the run's changes are undone
        monkeypatch.delenv(name)
    if setting is None:
        monkeypatch.delenv("RECSYS_API_COALESCE_WRITES", raising=False)
    else:
        monkeypatch.setenv("RECSYS_API_COALESCE_WRITES", setting)
    started: list[dict[str, Any]] = []
    monkeypatch.setattr(uvicorn, "run", lambda app, **options: started.append(options))
    uvicorn_runner.run(settings, workers=1)
    assert started[0]["http"] == expected
    # the import string uvicorn resolves in each worker names the class tested above
    assert Config(APP, http=started[0]["http"]).http == expected
    if expected == HTTP_PROTOCOL:
        config = Config(APP, http=expected, lifespan="off")
        config.load()
        assert config.http_protocol_class is CoalescingHttpToolsProtocol

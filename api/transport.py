"""Responses written to the socket in one send, not one for the head and one for the body.

uvicorn's httptools protocol writes the status line and headers when the app sends
``http.response.start`` and the body when it sends ``http.response.body``; uvloop sends each
write at once, so a small JSON answer costs two ``send`` system calls. Under load on two cores
that second call was about a tenth of a worker's time on the hot ``/similar`` route.

:class:`CoalescingHttpToolsProtocol` is uvicorn's protocol with its transport wrapped: writes
made during one turn of the event loop are joined and sent at the end of that turn (the head
and body of a response sent back to back become one send; a streamed body still leaves chunk
by chunk, each at the end of the turn that wrote it). Order is kept, and closing or handing the
connection over (a websocket upgrade) sends what is pending first. ``recsys serve`` uses it
unless ``RECSYS_API_COALESCE_WRITES`` is false.
"""

from __future__ import annotations

import asyncio
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol


class CoalescingTransport:
    """A transport that joins the writes of one event-loop turn into one write of the
    transport it wraps; everything else is the wrapped transport's."""

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self._transport = transport
        self._loop = loop
        self._pending: list[bytes] = []

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if not self._pending:
            self._loop.call_soon(self.flush)
        self._pending.append(data if isinstance(data, bytes) else bytes(data))  # may be reused

    def writelines(self, chunks: Any) -> None:
        for chunk in chunks:
            self.write(chunk)

    def flush(self) -> None:
        """Send what this turn wrote (at the end of the turn, or before a close)."""
        pending = self._pending
        if not pending:
            return
        self._pending = []
        if self._transport.is_closing():  # the peer left meanwhile: nothing to send it
            return
        self._transport.write(pending[0] if len(pending) == 1 else b"".join(pending))

    def close(self) -> None:
        self.flush()
        self._transport.close()

    def write_eof(self) -> None:
        self.flush()
        self._transport.write_eof()

    def set_protocol(self, protocol: asyncio.BaseProtocol) -> None:
        self.flush()
        self._transport.set_protocol(protocol)

    def abort(self) -> None:
        self._pending = []
        self._transport.abort()

    def get_write_buffer_size(self) -> int:
        return self._transport.get_write_buffer_size() + sum(map(len, self._pending))

    def __getattr__(self, name: str) -> Any:  # is_closing, get_extra_info, pause_reading, ...
        return getattr(self._transport, name)


class CoalescingHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol writing through a :class:`CoalescingTransport`."""

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        wrapped = CoalescingTransport(transport, self.loop)
        super().connection_made(wrapped)  # type: ignore[arg-type]


__all__ = ["CoalescingHttpToolsProtocol", "CoalescingTransport"]

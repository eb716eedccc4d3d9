"""HTTP connections, each bounded in what a client can make us hold.

- A request head (line and headers) must arrive within HEAD_TIMEOUT_S of its first byte and in
  at most MAX_HEAD_BYTES, or the connection gets 408 or 431 and is closed: a client that sends
  headers slowly or endlessly holds neither a slot nor memory for long.
- A connection with no request is closed after IDLE_S.
- At the connection cap, the connection that has gone longest without completing a request is
  closed to admit a new one, so a flood of idle or slow connections cannot lock real clients out.
- Request bodies are never decompressed and never read past a response: no route reads one
  (aiohttp's `auto_decompress` off, no lingering read), so a gzip bomb costs nothing.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import structlog
from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError, LineTooLong
from aiohttp.streams import EMPTY_PAYLOAD
from aiohttp.web_protocol import RequestHandler

log = structlog.get_logger(__name__)

# Limits on what a client may send: a longer request line gets 400, a longer header field or
# more headers 431. The two sizes differ so the parser's LineTooLong tells which one was hit.
MAX_REQUEST_LINE = 8190
MAX_HEADER_FIELD = 8192
MAX_HEADERS = 100
MAX_HEAD_BYTES = 32 * 1024  # the whole head, all fields together (nginx: 4 x 8 KiB)
HEAD_TIMEOUT_S = 10.0
IDLE_S = 60.0  # Eureka clients fetch every 30 s: their connection stays open between fetches
MAX_CONNECTIONS = 1024


def json_error(status: int, message: str, headers: dict[str, str] | None = None) -> web.Response:
    return web.json_response({"error": message, "status": status}, status=status, headers=headers)


class _Protocol(RequestHandler):
    """aiohttp's connection handler, with a head timeout and size, answering unparseable
    requests in JSON and quietly."""

    def __init__(self, manager: web.Server, **kw: Any) -> None:
        super().__init__(manager, **kw)
        self._head_timeout_s: float = getattr(manager, "head_timeout_s", HEAD_TIMEOUT_S)
        self.progress_at = time.monotonic()  # connection start, or the last complete request head
        self._head_bytes = 0
        self._head_timer: asyncio.TimerHandle | None = None
        # A request with a body came: what follows is body, not a head (no route reads bodies,
        # and aiohttp closes the connection after a response whose body was not read).
        self._body_seen = False

    def data_received(self, data: bytes) -> None:
        heads = self._request_count
        in_head = self._current_request is None and not self._messages and not self._body_seen
        super().data_received(data)
        if self._request_count > heads:  # a complete head: the next one starts from nothing
            new = list(self._messages)[-(self._request_count - heads) :]
            self._body_seen = self._body_seen or any(payload is not EMPTY_PAYLOAD for _, payload in new)
            self.progress_at = time.monotonic()
            self._head_bytes = 0
            self._stop_head_timer()
            return
        if not in_head or not data:
            return
        self._head_bytes += len(data)
        if self._head_bytes > MAX_HEAD_BYTES:
            self._refuse(431, f"request head over {MAX_HEAD_BYTES} bytes")
        elif self._head_timer is None:
            self._head_timer = self._loop.call_later(self._head_timeout_s, self._head_timed_out)

    def _head_timed_out(self) -> None:
        self._head_timer = None
        self._refuse(408, f"request head not complete within {self._head_timeout_s:g} s")

    def _refuse(self, status: int, reason: str) -> None:
        """Answer and close without waiting for the rest of a head that will not come."""
        log.debug("http_request_rejected", status=status, error=reason)
        transport = self.transport
        if transport is not None and not transport.is_closing():
            body = f'{{"error":"{reason}","status":{status}}}'.encode()
            transport.write(
                f"HTTP/1.1 {status} {'Request Timeout' if status == 408 else 'Request Header Fields Too Large'}\r\n"
                f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode()
                + body
            )
        self.force_close()

    def _stop_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def connection_lost(self, exc: BaseException | None) -> None:
        self._stop_head_timer()
        super().connection_lost(exc)

    def idle(self) -> bool:
        """No request is being handled or waiting: closing it loses nobody's answer."""
        return self._current_request is None and not self._messages

    def handle_error(
        self, request: Any, status: int = 500, exc: BaseException | None = None, message: str | None = None
    ) -> web.StreamResponse:
        too_long = isinstance(exc, LineTooLong) and exc.args[1] == MAX_HEADER_FIELD
        if too_long or (isinstance(exc, HttpProcessingError) and "Too many headers" in str(exc.message)):
            status = 431
        reason = exc.message if isinstance(exc, HttpProcessingError) else (message or "bad request")
        log.debug("http_request_rejected", status=status, error=reason)
        response = json_error(status, str(reason)[:200])
        response.force_close()
        return response


class _Server(web.Server):
    """aiohttp's server with a connection cap that closes the longest idle connection first."""

    max_connections = MAX_CONNECTIONS
    head_timeout_s = HEAD_TIMEOUT_S
    evicted = 0

    def __call__(self) -> RequestHandler:
        return _Protocol(self, loop=self._loop, **self._kwargs)

    def connection_made(self, handler: RequestHandler, transport: asyncio.Transport) -> None:
        if len(self.connections) >= self.max_connections:
            idle = [h for h in self.connections if isinstance(h, _Protocol) and h.idle()]
            if idle:
                self.evicted += 1
                min(idle, key=lambda h: h.progress_at).force_close()
            else:  # every slot holds a request in progress (long polls): this one waits its turn
                transport.close()
        super().connection_made(handler, transport)


class LimitedRunner(web.AppRunner):
    """An AppRunner whose connections are _Protocol ones behind a capped _Server."""

    def __init__(
        self,
        app: web.Application,
        *,
        max_connections: int = MAX_CONNECTIONS,
        head_timeout_s: float = HEAD_TIMEOUT_S,
        idle_s: float = IDLE_S,
        **kw: Any,
    ) -> None:
        super().__init__(
            app,
            handle_signals=False,
            access_log=None,  # no line per request; /metrics counts them
            max_line_size=MAX_REQUEST_LINE,
            max_field_size=MAX_HEADER_FIELD,
            max_headers=MAX_HEADERS,
            keepalive_timeout=idle_s,
            lingering_time=0,  # never read an unread body to keep a connection alive
            auto_decompress=False,  # never inflate a body no route reads (a gzip bomb)
            **kw,
        )
        self._max_connections = max_connections
        self._head_timeout_s = head_timeout_s

    async def _make_server(self) -> web.Server:
        server = await super()._make_server()
        server.__class__ = _Server  # the same server, handing connections to our protocol class
        server.max_connections = self._max_connections  # type: ignore[attr-defined]
        server.head_timeout_s = self._head_timeout_s  # type: ignore[attr-defined]
        return server

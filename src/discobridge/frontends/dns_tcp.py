"""DNS over TCP connections (RFC 1035 4.2.2, RFC 7766), each bounded in what it can make us hold.

- Memory: a connection answers queries only while its unsent replies stay under WRITE_HIGH; past
  that it stops reading until the client reads. A client that keeps sending without reading
  (more than INPUT_LIMIT waiting) is cut off. So one connection holds at most about
  WRITE_HIGH + INPUT_LIMIT + one read, and all of them that times the connection cap.
- Time: the idle timer runs from the last complete message answered (or the last reply the
  client drained), not from the last byte: a client that trickles a byte at a time, or never
  reads, is closed after `idle_s` like a silent one.
- Slots: at the connection cap, the connection idle the longest is closed to admit a new one (as
  Knot and Unbound do), so a flood of idle connections cannot lock out real clients.
"""

from __future__ import annotations

import asyncio
import struct
import time
from collections.abc import Callable
from typing import cast

import structlog

log = structlog.get_logger(__name__)

WRITE_HIGH = 64 * 1024  # unsent reply bytes per connection before it stops reading
INPUT_LIMIT = 64 * 1024 + 2  # queries waiting while the client does not read (one message fits)


class TcpConnections:
    """The open DNS-over-TCP connections of a frontend, capped; the longest idle goes first."""

    def __init__(self, *, limit: int, idle_s: float, respond: Callable[[bytes], bytes | None]) -> None:
        self.limit = limit
        self.idle_s = idle_s
        self.respond = respond
        self._open: set[DnsTcpConnection] = set()
        self.evicted = 0  # connections closed to make room (counted in /metrics)

    def __len__(self) -> int:
        return len(self._open)

    def admit(self, connection: DnsTcpConnection) -> None:
        if len(self._open) >= self.limit:
            oldest = min(self._open, key=lambda c: c.progress_at)
            self.evicted += 1
            oldest.abort()
        self._open.add(connection)

    def release(self, connection: DnsTcpConnection) -> None:
        self._open.discard(connection)

    def close_all(self) -> None:
        for connection in list(self._open):
            connection.close()


class DnsTcpConnection(asyncio.Protocol):
    """Length-prefixed queries; all the complete ones a read brings get one write, as long as the
    client keeps reading what it is sent."""

    def __init__(self, connections: TcpConnections) -> None:
        self._connections = connections
        self._buffer = bytearray()
        self._transport: asyncio.Transport | None = None
        self._blocked = False  # the client is not reading: answer nothing more until it does
        self._timer: asyncio.TimerHandle | None = None
        self.progress_at = time.monotonic()  # the last complete message, or the last drained reply

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)  # uvloop's are not its subclasses
        self._transport.set_write_buffer_limits(high=WRITE_HIGH, low=WRITE_HIGH // 4)
        self._connections.admit(self)
        self._watch()

    def data_received(self, data: bytes) -> None:
        self._buffer += data
        self._answer()
        if self._blocked and len(self._buffer) > INPUT_LIMIT:
            log.debug("dns_tcp_client_not_reading", buffered=len(self._buffer))
            self.abort()

    def _answer(self) -> None:
        """Answer the complete messages buffered, while the client keeps up with the replies."""
        if self._transport is None:
            return
        replies: list[bytes] = []
        pending = self._transport.get_write_buffer_size()
        while len(self._buffer) >= 2 and pending < WRITE_HIGH:
            (size,) = struct.unpack_from("!H", self._buffer)
            if len(self._buffer) < 2 + size:
                break
            message = bytes(self._buffer[2 : 2 + size])
            del self._buffer[: 2 + size]
            self.progress_at = time.monotonic()
            try:
                reply = self._connections.respond(message)
            except Exception:
                log.debug("dns_query_failed", exc_info=True)
                continue
            if reply is not None:
                replies.append(struct.pack("!H", len(reply)) + reply)
                pending += len(reply) + 2
        if replies:
            self._transport.write(b"".join(replies))  # may call pause_writing at once
        if pending >= WRITE_HIGH and not self._blocked:
            self.pause_writing()

    def pause_writing(self) -> None:
        self._blocked = True
        if self._transport is not None:
            self._transport.pause_reading()  # a client that does not read gets no more answers

    def resume_writing(self) -> None:
        self._blocked = False
        self.progress_at = time.monotonic()
        self._answer()
        if not self._blocked and self._transport is not None:
            self._transport.resume_reading()

    def connection_lost(self, exc: Exception | None) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._connections.release(self)

    def _watch(self) -> None:
        """Close the connection once it made no progress for idle_s; check again meanwhile."""
        if self._transport is None or self._transport.is_closing():
            return
        idle_for = time.monotonic() - self.progress_at
        if idle_for >= self._connections.idle_s:
            self.abort() if self._blocked else self.close()
            return
        loop = asyncio.get_running_loop()
        self._timer = loop.call_later(self._connections.idle_s - idle_for, self._watch)

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()

    def abort(self) -> None:
        """Close at once, dropping unsent replies (a client that does not read gets none)."""
        if self._transport is not None:
            self._transport.abort()

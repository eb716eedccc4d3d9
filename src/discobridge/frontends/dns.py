"""DNS over UDP and TCP on every configured address, answering from precomputed bytes."""

from __future__ import annotations

import asyncio
import errno
import socket
import struct
from collections.abc import Sequence
from typing import Any

import structlog

from discobridge.config import BindError, HostPort
from discobridge.frontends import udp_batch
from discobridge.frontends.dns_answer import DnsResponder
from discobridge.metrics import Metrics
from discobridge.store import SnapshotStore

log = structlog.get_logger(__name__)

TCP_IDLE_S = 10.0  # RFC 7766 suggests seconds, not minutes, for idle DNS-over-TCP connections
TCP_MAX_CONNECTIONS = 512
# Room for bursts of queries while the loop is busy (the kernel caps it at net.core.rmem_max).
UDP_RECEIVE_BUFFER = 4 * 1024 * 1024
# asyncio reads each datagram into a buffer of this size (256 KiB by default, which costs more
# than the whole answer); EDNS queries are a few hundred bytes.
UDP_READ_SIZE = 4096


class _Udp(asyncio.DatagramProtocol):
    def __init__(self, responder: DnsResponder) -> None:
        self._respond = responder.respond_udp
        self._transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport  # type: ignore[assignment]
        sock = transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, UDP_RECEIVE_BUFFER)
        if hasattr(transport, "max_size"):  # asyncio's selector transport; uvloop has no such cost
            transport.max_size = UDP_READ_SIZE

    def datagram_received(self, data: bytes, addr: tuple[str | Any, int]) -> None:
        try:
            reply = self._respond(data)
        except Exception:
            log.debug("dns_query_failed", exc_info=True)
            return
        if reply is not None and self._transport is not None:
            self._transport.sendto(reply, addr)

    def error_received(self, exc: Exception) -> None:
        log.debug("dns_udp_error", error=str(exc))


class _Tcp(asyncio.Protocol):
    """Length-prefixed queries (RFC 1035 4.2.2); all complete ones in a read get one write."""

    def __init__(self, frontend: DnsFrontend) -> None:
        self._frontend = frontend
        self._buffer = bytearray()
        self._transport: asyncio.Transport | None = None
        self._idle: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport  # type: ignore[assignment]
        if not self._frontend.admit(self):
            transport.close()
            return
        self._arm_idle_timer()

    def data_received(self, data: bytes) -> None:
        self._buffer += data
        replies = []
        while len(self._buffer) >= 2:
            (size,) = struct.unpack_from("!H", self._buffer)
            if len(self._buffer) < 2 + size:
                break
            message = bytes(self._buffer[2 : 2 + size])
            del self._buffer[: 2 + size]
            try:
                reply = self._frontend.responder.respond_tcp(message)
            except Exception:
                log.debug("dns_query_failed", exc_info=True)
                reply = None
            if reply is not None:
                replies.append(struct.pack("!H", len(reply)) + reply)
        if replies and self._transport is not None:
            self._transport.write(b"".join(replies))
        self._arm_idle_timer()

    def pause_writing(self) -> None:
        if self._transport is not None:
            self._transport.pause_reading()  # a client that does not read gets no more answers

    def resume_writing(self) -> None:
        if self._transport is not None:
            self._transport.resume_reading()

    def connection_lost(self, exc: Exception | None) -> None:
        if self._idle is not None:
            self._idle.cancel()
        self._frontend.release(self)

    def _arm_idle_timer(self) -> None:
        if self._idle is not None:
            self._idle.cancel()
        if self._transport is not None:
            self._idle = asyncio.get_running_loop().call_later(self._frontend.tcp_idle_s, self._transport.close)

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()


class DnsFrontend:
    """Serves the store's snapshot over DNS on each listen address, UDP and TCP."""

    def __init__(
        self,
        *,
        store: SnapshotStore,
        metrics: Metrics,
        listen: Sequence[HostPort],
        tcp_idle_s: float = TCP_IDLE_S,
        tcp_max_connections: int = TCP_MAX_CONNECTIONS,
        udp_batching: bool | None = None,
    ) -> None:
        self.responder = DnsResponder(store=store)
        # recvmmsg/sendmmsg where the platform has them; the event loop's UDP transport elsewhere.
        self.udp_batching = udp_batch.available() if udp_batching is None else udp_batching
        self.tcp_idle_s = tcp_idle_s
        self._tcp_max_connections = tcp_max_connections
        self._listen = list(listen)
        self._connections: set[_Tcp] = set()
        self._udp: list[asyncio.DatagramTransport | udp_batch.BatchedUdpServer] = []
        self._tcp: list[asyncio.Server] = []
        self.addresses: list[HostPort] = []
        metrics.count_from(
            "discobridge_dns_queries",
            "DNS queries answered, by query type and response code.",
            ["qtype", "rcode"],
            self.responder.counts,
        )

    async def start(self) -> None:
        """Bind every address (UDP first, then TCP on the same port); BindError names the one that
        cannot be bound."""
        for address in self._listen:
            try:
                await self._start_one(address)
            except OSError as exc:
                await self.stop()
                raise BindError.of("[dns] listen", address, exc) from None
        log.info("dns_listening", addresses=[str(a) for a in self.addresses], udp_batching=self.udp_batching)

    async def _start_one(self, address: HostPort) -> None:
        family = socket.AF_INET6 if ":" in address.host else socket.AF_INET
        # With port 0 the OS picks a free UDP port, which TCP may already use: pick again.
        for attempt in range(20 if address.port == 0 else 1):
            port = await self._start_udp(address, family)
            try:
                server = await asyncio.get_running_loop().create_server(
                    lambda: _Tcp(self), address.host, port, family=family
                )
            except OSError as exc:
                self._udp.pop().close()
                if exc.errno != errno.EADDRINUSE or attempt == 19 or address.port:
                    raise
                continue
            self._tcp.append(server)
            self.addresses.append(HostPort(address.host, port))
            return

    async def _start_udp(self, address: HostPort, family: socket.AddressFamily) -> int:
        """Serve UDP on `address`; returns the bound port (the OS picks one for port 0)."""
        if self.udp_batching:
            sock = socket.socket(family, socket.SOCK_DGRAM)
            try:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, UDP_RECEIVE_BUFFER)
                sock.bind((address.host, address.port))
                sock.setblocking(False)
            except OSError:
                sock.close()
                raise
            server = udp_batch.BatchedUdpServer(sock, self.responder.respond_udp)
            server.start()
            self._udp.append(server)
            return int(sock.getsockname()[1])
        transport, _ = await asyncio.get_running_loop().create_datagram_endpoint(
            lambda: _Udp(self.responder), local_addr=(address.host, address.port), family=family
        )
        self._udp.append(transport)
        return int(transport.get_extra_info("sockname")[1])

    async def stop(self) -> None:
        for transport in self._udp:
            transport.close()
        for server in self._tcp:
            server.close()
        for connection in list(self._connections):
            connection.close()
        for server in self._tcp:
            await server.wait_closed()
        self._udp, self._tcp = [], []

    def admit(self, connection: _Tcp) -> bool:
        if len(self._connections) >= self._tcp_max_connections:
            return False
        self._connections.add(connection)
        return True

    def release(self, connection: _Tcp) -> None:
        self._connections.discard(connection)

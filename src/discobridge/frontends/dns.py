"""DNS over UDP and TCP on every configured address, answering from precomputed bytes."""

from __future__ import annotations

import asyncio
import errno
import socket
from collections.abc import Sequence
from typing import Any

import structlog

from discobridge.config import BindError, HostPort
from discobridge.frontends import udp_batch
from discobridge.frontends.dns_answer import DnsResponder
from discobridge.frontends.dns_tcp import DnsTcpConnection, TcpConnections
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
        self.tcp = TcpConnections(limit=tcp_max_connections, idle_s=tcp_idle_s, respond=self.responder.respond_tcp)
        # recvmmsg/sendmmsg where the platform has them; the event loop's UDP transport elsewhere.
        self.udp_batching = udp_batch.available() if udp_batching is None else udp_batching
        self._listen = list(listen)
        self._udp: list[asyncio.DatagramTransport | udp_batch.BatchedUdpServer] = []
        self._tcp: list[asyncio.Server] = []
        self.addresses: list[HostPort] = []
        metrics.gauge_from(
            "discobridge_dns_tcp_connections", "DNS-over-TCP connections open now.", [], lambda: {(): len(self.tcp)}
        )
        metrics.count_from(
            "discobridge_dns_tcp_evicted",
            "DNS-over-TCP connections closed to admit a new one at the connection cap (the longest idle).",
            [],
            lambda: {(): self.tcp.evicted},
        )
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
                    lambda: DnsTcpConnection(self.tcp), address.host, port, family=family
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
        self.tcp.close_all()
        for server in self._tcp:
            await server.wait_closed()
        self._udp, self._tcp = [], []

"""Hostile DNS input: generated and mutated packets never stop the server from answering.

Each run sends 100 batches of 100 packets (10,000) over UDP and some over TCP, and after every
batch asks a real question that must still be answered. DISCOBRIDGE_FUZZ_EXAMPLES=N runs N batches.
"""

from __future__ import annotations

import asyncio
import os
import socket
import struct
from collections.abc import AsyncIterator

import dns.asyncquery
import dns.message
import dns.rcode
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from discobridge.config import HostPort
from discobridge.frontends.dns import DnsFrontend
from discobridge.metrics import Metrics
from tests.helpers import endpoint, make_store, publish

ZONE = "fuzz.test"
NAMES = [f"orders.{ZONE}", f"_orders._tcp.{ZONE}", f"orders.prod.{ZONE}", ZONE, f"nope.{ZONE}", "example.com"]
TYPES = ["A", "AAAA", "SRV", "TXT", "SOA", "NS", "ANY", "MX", "AXFR"]
VALID = [
    dns.message.make_query(name, rdtype, use_edns=edns).to_wire()
    for name in NAMES
    for rdtype in TYPES
    for edns in (False, 0)
]


@st.composite
def packet(draw: st.DrawFn) -> bytes:
    kind = draw(st.sampled_from(["random", "flip", "truncate", "splice", "header"]))
    base = draw(st.sampled_from(VALID))
    if kind == "random":
        return draw(st.binary(max_size=600))
    if kind == "flip":
        data = bytearray(base)
        for _ in range(draw(st.integers(1, 8))):
            data[draw(st.integers(0, len(data) - 1))] = draw(st.integers(0, 255))
        return bytes(data)
    if kind == "truncate":
        return base[: draw(st.integers(0, len(base) - 1))]
    if kind == "splice":
        return base + draw(st.binary(max_size=64))
    counts = struct.pack("!4H", *(draw(st.integers(0, 65535)) for _ in range(4)))
    return base[:4] + counts + base[12:]


@pytest.fixture
async def port() -> AsyncIterator[int]:
    store = make_store(zone=ZONE)
    publish(store, (endpoint("orders", n) for n in range(1, 6)))
    frontend = DnsFrontend(store=store, metrics=Metrics.create(), listen=[HostPort("127.0.0.1", 0)])
    await frontend.start()
    yield frontend.addresses[0].port
    await frontend.stop()


EXAMPLES = int(os.environ.get("DISCOBRIDGE_FUZZ_EXAMPLES", "100"))


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(batch=st.lists(packet(), min_size=100, max_size=100))
async def test_fuzzed_packets_never_stop_the_answers(port: int, batch: list[bytes]) -> None:
    loop = asyncio.get_running_loop()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.setblocking(False)
        for data in batch:
            await loop.sock_sendto(sock, data, ("127.0.0.1", port))
    _, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"".join(struct.pack("!H", len(d)) + d for d in batch[:10]))
    await writer.drain()
    writer.close()
    await writer.wait_closed()
    query = dns.message.make_query(f"orders.{ZONE}", "A")
    answer = await dns.asyncquery.udp(query, "127.0.0.1", port=port, timeout=2)
    assert answer.rcode() == dns.rcode.NOERROR and len(answer.answer[0]) == 5

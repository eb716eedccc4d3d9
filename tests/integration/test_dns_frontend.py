"""The DNS frontend on real UDP and TCP sockets on 127.0.0.1, queried with dnspython."""

from __future__ import annotations

import asyncio
import random
import socket
import struct
from collections.abc import AsyncIterator, Sequence

import dns.asyncquery
import dns.flags
import dns.message
import dns.rcode
import dns.rdatatype
import pytest
from aiobotocore.session import AioSession

from discobridge.config import HostPort
from discobridge.fakeaws.estate import Estate
from discobridge.fakeaws.server import FakeAws
from discobridge.frontends import udp_batch
from discobridge.frontends.dns import DnsFrontend
from discobridge.metrics import Metrics
from discobridge.model import Endpoint, Health
from discobridge.store import SnapshotStore
from tests.conftest import running
from tests.helpers import endpoint as make_endpoint
from tests.helpers import make_store, publish

ZONE = "disco.test"
TTL = 7


def endpoint(service: str, n: int, health: Health = Health.HEALTHY, cluster: str = "prod", port: int = 0) -> Endpoint:
    return make_endpoint(service, n, health=health, cluster=cluster, **({"host_port": port} if port else {}))


ESTATE = (
    endpoint("orders", 1),
    endpoint("orders", 2),
    endpoint("orders", 3, Health.UNHEALTHY),
    endpoint("orders", 4, Health.DRAINING),
    endpoint("orders", 5, cluster="staging"),
    endpoint("sick", 6, Health.UNHEALTHY),
    endpoint("sick", 7, Health.DRAINING),
    endpoint("leaving", 8, Health.DRAINING),
    *(endpoint("big", 100 + n) for n in range(40)),
    *(endpoint("mid", 200 + n) for n in range(5)),
    endpoint("x" * 70, 300),  # a name DNS cannot carry: left out of DNS, the rest unharmed
)


class Dns:
    """A running frontend with its store, and helpers to query it."""

    def __init__(self, store: SnapshotStore, frontend: DnsFrontend, metrics: Metrics) -> None:
        self.store, self.frontend, self.metrics = store, frontend, metrics
        self.port = frontend.addresses[0].port

    def publish(self, endpoints: Sequence[Endpoint]) -> None:
        publish(self.store, endpoints)

    async def udp(self, name: str, rdtype: str = "A", **kw: object) -> dns.message.Message:
        query = dns.message.make_query(name, rdtype, **kw)  # type: ignore[arg-type]
        return await dns.asyncquery.udp(query, "127.0.0.1", port=self.port, timeout=2, ignore_trailing=False)

    async def tcp(self, name: str, rdtype: str = "A") -> dns.message.Message:
        return await dns.asyncquery.tcp(dns.message.make_query(name, rdtype), "127.0.0.1", port=self.port, timeout=2)


@pytest.fixture(params=[True, False], ids=["recvmmsg", "loop-transport"])
async def server(request: pytest.FixtureRequest) -> AsyncIterator[Dns]:
    if request.param and not udp_batch.available():
        pytest.skip("recvmmsg/sendmmsg are Linux-only")
    metrics = Metrics.create()
    store = make_store(zone=ZONE, ttl_s=TTL)
    frontend = DnsFrontend(
        store=store,
        metrics=metrics,
        listen=[HostPort("127.0.0.1", 0)],
        tcp_idle_s=0.2,
        tcp_max_connections=3,
        udp_batching=request.param,
    )
    await frontend.start()
    try:
        yield Dns(store, frontend, metrics)
    finally:
        await frontend.stop()


@pytest.fixture
async def dns_server(server: Dns) -> Dns:
    server.publish(ESTATE)
    return server


def rrset_values(response: dns.message.Message, rdtype: str) -> list[str]:
    return [
        item.to_text() for rrset in response.answer if rrset.rdtype == dns.rdatatype.from_text(rdtype) for item in rrset
    ]


async def test_servfail_before_the_first_snapshot_never_nxdomain(server: Dns) -> None:
    response = await server.udp(f"orders.{ZONE}")
    assert response.rcode() == dns.rcode.SERVFAIL
    server.publish(ESTATE)
    assert (await server.udp(f"orders.{ZONE}")).rcode() == dns.rcode.NOERROR


async def test_a_txt_srv_for_a_service_serve_healthy_non_draining_endpoints(dns_server: Dns) -> None:
    a = await dns_server.udp(f"orders.{ZONE}", "A")
    assert a.flags & dns.flags.AA and a.rcode() == dns.rcode.NOERROR
    assert sorted(rrset_values(a, "A")) == ["10.0.0.2", "10.0.0.3", "10.0.0.6"]
    assert a.answer[0].ttl == TTL

    txt = await dns_server.udp(f"orders.{ZONE}", "TXT")
    assert sorted(rrset_values(txt, "TXT")) == ['"10.0.0.2:32769"', '"10.0.0.3:32770"', '"10.0.0.6:32773"']

    srv = await dns_server.udp(f"orders.{ZONE}", "SRV")
    targets = {item.target.to_text(): (item.priority, item.weight, item.port) for item in srv.answer[0]}
    assert targets == {
        f"{1:032x}.orders.{ZONE}.": (1, 1, 32769),
        f"{2:032x}.orders.{ZONE}.": (1, 1, 32770),
        f"{5:032x}.orders.{ZONE}.": (1, 1, 32773),
    }
    glue = {rrset.name.to_text(): rrset[0].address for rrset in srv.additional if rrset.rdtype == dns.rdatatype.A}
    assert glue == {
        f"{1:032x}.orders.{ZONE}.": "10.0.0.2",
        f"{2:032x}.orders.{ZONE}.": "10.0.0.3",
        f"{5:032x}.orders.{ZONE}.": "10.0.0.6",
    }


async def test_cluster_qualified_rfc2782_and_task_names(dns_server: Dns) -> None:
    prod = await dns_server.udp(f"orders.prod.{ZONE}", "A")
    assert sorted(rrset_values(prod, "A")) == ["10.0.0.2", "10.0.0.3"]
    staging = await dns_server.udp(f"orders.staging.{ZONE}", "SRV")
    assert [item.port for item in staging.answer[0]] == [32773]

    rfc2782 = await dns_server.udp(f"_orders._tcp.{ZONE}", "SRV")
    assert sorted(item.port for item in rfc2782.answer[0]) == [32769, 32770, 32773]

    task = await dns_server.udp(f"{4:032x}.orders.{ZONE}", "A")  # a draining task still has its own name
    assert rrset_values(task, "A") == ["10.0.0.5"]


async def test_no_healthy_endpoint_fails_open_to_the_unhealthy_ones_never_draining(dns_server: Dns) -> None:
    response = await dns_server.udp(f"sick.{ZONE}", "A")
    assert rrset_values(response, "A") == ["10.0.0.7"]
    for rdtype in ("A", "TXT", "SRV"):  # every endpoint draining: the name exists with no records
        leaving = await dns_server.udp(f"leaving.{ZONE}", rdtype)
        assert leaving.rcode() == dns.rcode.NOERROR and not leaving.answer and leaving.authority
    assert not (await dns_server.udp(f"_leaving._tcp.{ZONE}", "SRV")).answer
    assert rrset_values(await dns_server.udp(f"{8:032x}.leaving.{ZONE}", "A"), "A") == ["10.0.0.9"]


async def test_apex_soa_and_ns_with_generation_as_serial(dns_server: Dns) -> None:
    soa = await dns_server.udp(ZONE, "SOA")
    assert soa.answer[0][0].serial == dns_server.store.generation == 1
    assert soa.answer[0][0].minimum == TTL
    ns = await dns_server.udp(ZONE, "NS")
    assert rrset_values(ns, "NS") == [f"ns.{ZONE}."]


@pytest.mark.parametrize(
    ("name", "rdtype", "rcode", "aa", "soa"),
    [
        (f"nope.{ZONE}", "A", dns.rcode.NXDOMAIN, True, True),
        (f"x.nope.{ZONE}", "SRV", dns.rcode.NXDOMAIN, True, True),
        (f"orders.{ZONE}", "AAAA", dns.rcode.NOERROR, True, True),
        (f"orders.{ZONE}", "MX", dns.rcode.NOERROR, True, True),
        (f"prod.{ZONE}", "A", dns.rcode.NOERROR, True, True),  # empty non-terminal (RFC 8020)
        (f"_tcp.{ZONE}", "A", dns.rcode.NOERROR, True, True),
        ("example.com", "A", dns.rcode.REFUSED, False, False),
        (f"x{ZONE}", "A", dns.rcode.REFUSED, False, False),  # a suffix, not a label boundary
        (f"orders.{ZONE}", "AXFR", dns.rcode.REFUSED, False, False),
    ],
    ids=[
        "nxdomain",
        "nxdomain-deep",
        "nodata-aaaa",
        "nodata-mx",
        "ent-cluster",
        "ent-tcp",
        "outside",
        "suffix",
        "axfr",
    ],
)
async def test_negative_answers(dns_server: Dns, name: str, rdtype: str, rcode: int, aa: bool, soa: bool) -> None:
    response = await dns_server.udp(name, rdtype)
    assert response.rcode() == rcode
    assert bool(response.flags & dns.flags.AA) is aa
    assert not response.answer
    assert (len(response.authority) == 1 and response.authority[0].rdtype == dns.rdatatype.SOA) is soa
    if soa:
        assert response.authority[0].name.to_text() == f"{ZONE}."


async def test_names_match_case_insensitively_and_the_question_is_echoed_exactly(dns_server: Dns) -> None:
    query = dns.message.make_query("oRdErS.DiScO.TeSt", "A", use_edns=False)
    wire = query.to_wire()
    reply = await raw_udp(dns_server.port, wire)
    assert reply[12 : 12 + len(wire) - 12] == wire[12:]  # question bytes as sent, case included
    parsed = dns.message.from_wire(reply)
    assert parsed.id == query.id and sorted(rrset_values(parsed, "A")) == ["10.0.0.2", "10.0.0.3", "10.0.0.6"]


async def test_edns_is_echoed_and_its_payload_size_respected(dns_server: Dns) -> None:
    plain = await dns_server.udp(f"big.{ZONE}", "A", use_edns=False)
    assert plain.flags & dns.flags.TC and not plain.answer and plain.edns < 0

    with_edns = await dns_server.udp(f"big.{ZONE}", "A", use_edns=0, payload=4096)
    assert not with_edns.flags & dns.flags.TC and with_edns.edns == 0
    assert len(rrset_values(with_edns, "A")) == 40
    assert with_edns.payload == 1232

    small = await dns_server.udp(f"big.{ZONE}", "A", use_edns=0, payload=600)
    assert small.flags & dns.flags.TC and small.edns == 0


async def test_truncated_over_udp_complete_over_tcp_with_40_endpoints(dns_server: Dns) -> None:
    udp = await dns_server.udp(f"big.{ZONE}", "SRV", use_edns=0, payload=1232)
    assert udp.flags & dns.flags.TC and not udp.answer
    tcp = await dns_server.tcp(f"big.{ZONE}", "SRV")
    assert not tcp.flags & dns.flags.TC
    assert len(tcp.answer[0]) == 40 and len(tcp.additional) == 40


async def test_glue_that_does_not_fit_is_dropped_without_truncation(dns_server: Dns) -> None:
    full = await dns_server.tcp(f"mid.{ZONE}", "SRV")
    assert len(full.answer[0]) == 5 and len(full.additional) == 5
    udp = await dns_server.udp(f"mid.{ZONE}", "SRV", use_edns=False)  # 512 bytes: no room for glue
    assert not udp.flags & dns.flags.TC and len(udp.answer[0]) == 5 and not udp.additional


async def test_answer_order_rotates_between_queries(dns_server: Dns) -> None:
    orders = set()
    for _ in range(10):
        response = await dns_server.udp(f"orders.{ZONE}", "A")
        orders.add(tuple(rrset_values(response, "A")))
    assert len(orders) >= 2
    assert all(sorted(o) == ["10.0.0.2", "10.0.0.3", "10.0.0.6"] for o in orders)


async def test_tcp_serves_pipelined_queries_on_one_connection_then_closes_when_idle(dns_server: Dns) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", dns_server.port)
    queries = [dns.message.make_query(f"{name}.{ZONE}", "A") for name in ("orders", "sick", "nope", "big")]
    writer.write(b"".join(struct.pack("!H", len(w)) + w for w in (q.to_wire() for q in queries)))
    await writer.drain()
    replies = []
    for _ in queries:
        (size,) = struct.unpack("!H", await reader.readexactly(2))
        replies.append(dns.message.from_wire(await reader.readexactly(size)))
    assert [r.id for r in replies] == [q.id for q in queries]
    assert [r.rcode() for r in replies] == [0, 0, dns.rcode.NXDOMAIN, 0]
    assert await asyncio.wait_for(reader.read(), timeout=5) == b""  # closed by the idle timeout
    writer.close()
    await writer.wait_closed()


async def test_tcp_connections_beyond_the_cap_are_closed(dns_server: Dns) -> None:
    held = [await asyncio.open_connection("127.0.0.1", dns_server.port) for _ in range(3)]
    reader, writer = await asyncio.open_connection("127.0.0.1", dns_server.port)
    assert await asyncio.wait_for(reader.read(), timeout=5) == b""
    for _, w in [*held, (reader, writer)]:
        w.close()
        await w.wait_closed()


def header(qid: int, flags: int, qd: int = 1, an: int = 0, ns: int = 0, ar: int = 0) -> bytes:
    return struct.pack("!6H", qid, flags, qd, an, ns, ar)


QUESTION = b"\x06orders\x05disco\x04test\x00\x00\x01\x00\x01"

MALFORMED: list[tuple[str, bytes, int | None]] = [
    ("empty", b"", None),
    ("one-byte", b"\x01", None),
    ("short-header", b"\x12\x34\x01\x00\x00\x01", None),
    ("response-bit", header(1, 0x8100) + QUESTION, None),
    ("opcode-notify", header(2, 0x2000) + QUESTION, dns.rcode.NOTIMP),
    ("opcode-update", header(3, 0x2800) + QUESTION, dns.rcode.NOTIMP),
    ("two-questions", header(4, 0x0100, qd=2) + QUESTION + QUESTION, dns.rcode.FORMERR),
    ("no-question", header(5, 0x0100, qd=0), dns.rcode.FORMERR),
    ("answer-count", header(6, 0x0100, an=1) + QUESTION, dns.rcode.FORMERR),
    ("label-runs-off-end", header(7, 0x0100) + b"\x3forders", dns.rcode.FORMERR),
    ("no-qtype", header(8, 0x0100) + b"\x06orders\x00", dns.rcode.FORMERR),
    ("label-too-long", header(9, 0x0100) + b"\x7f" + b"a" * 127 + b"\x00\x00\x01\x00\x01", dns.rcode.FORMERR),
    ("pointer-loop", header(10, 0x0100) + b"\xc0\x0c\x00\x01\x00\x01", dns.rcode.FORMERR),
    ("pointer-forward", header(11, 0x0100) + b"\xc0\xff\x00\x01\x00\x01", dns.rcode.FORMERR),
    ("bad-opt", header(12, 0x0100, ar=1) + QUESTION + b"\x00\x00\x01", dns.rcode.FORMERR),
    (
        "opt-not-opt",
        header(13, 0x0100, ar=1) + QUESTION + b"\x00\x00\x01\x00\x01\x00\x00\x00\x00\x00\x00",
        dns.rcode.FORMERR,
    ),
    ("trailing-bytes", header(15, 0x0100) + QUESTION + b"junk", dns.rcode.FORMERR),
    (
        "opt-trailing-bytes",
        header(16, 0x0100, ar=1) + QUESTION + b"\x00\x00\x29\x04\xd0\x00\x00\x00\x00\x00\x00xx",
        dns.rcode.FORMERR,
    ),
    (
        "name-too-long",
        header(14, 0x0100) + b"\x3f" + b"a" * 63 + (b"\x3f" + b"b" * 63) * 4 + b"\x00\x00\x01\x00\x01",
        dns.rcode.FORMERR,
    ),
]


async def raw_udp(port: int, packet: bytes) -> bytes:
    loop = asyncio.get_running_loop()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.setblocking(False)
        await loop.sock_sendto(sock, packet, ("127.0.0.1", port))
        return await asyncio.wait_for(loop.sock_recv(sock, 65535), timeout=2)


@pytest.mark.parametrize(("packet", "rcode"), [m[1:] for m in MALFORMED], ids=[m[0] for m in MALFORMED])
async def test_malformed_packet_gets_formerr_or_notimp_or_nothing(
    dns_server: Dns, packet: bytes, rcode: int | None
) -> None:
    loop = asyncio.get_running_loop()
    good = dns.message.make_query(f"orders.{ZONE}", "A")
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.setblocking(False)
        await loop.sock_sendto(sock, packet, ("127.0.0.1", dns_server.port))
        if rcode is not None:
            reply = await asyncio.wait_for(loop.sock_recv(sock, 65535), timeout=2)
            assert reply[:2] == packet[:2] and reply[2] & 0x80  # our id back, QR set
            assert reply[3] & 0x0F == rcode
        await loop.sock_sendto(sock, good.to_wire(), ("127.0.0.1", dns_server.port))
        # The next datagram is the good query's answer: nothing was sent for a dropped packet.
        reply = dns.message.from_wire(await asyncio.wait_for(loop.sock_recv(sock, 65535), timeout=2))
        assert reply.id == good.id and reply.rcode() == dns.rcode.NOERROR


async def test_random_garbage_never_stops_the_server(dns_server: Dns) -> None:
    rng = random.Random(1234)
    loop = asyncio.get_running_loop()
    packets = [rng.randbytes(rng.randrange(0, 300)) for _ in range(500)]
    # Random bytes behind a plausible header, so they get past the first checks into the parser.
    packets += [
        header(n, rng.choice([0, 0x0100]), qd=1, ar=rng.choice([0, 1])) + rng.randbytes(rng.randrange(0, 80))
        for n in range(500)
    ]
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.setblocking(False)
        for start in range(0, len(packets), 50):
            for packet in packets[start : start + 50]:
                await loop.sock_sendto(sock, packet, ("127.0.0.1", dns_server.port))
            # Sender and server share this event loop: a good query after each burst lets the
            # server drain its socket, and proves it still answers.
            assert (await dns_server.udp(f"orders.{ZONE}")).rcode() == dns.rcode.NOERROR
    # TCP too: a garbage length prefix and body, then a real query on a fresh connection.
    _, writer = await asyncio.open_connection("127.0.0.1", dns_server.port)
    writer.write(b"\x00\x05\xff\xff\xff\xff\xff" + b"\x00\x01\x00")
    await writer.drain()
    writer.close()
    await writer.wait_closed()
    assert (await dns_server.tcp(f"orders.{ZONE}")).rcode() == dns.rcode.NOERROR


async def test_queries_are_counted_by_type_and_rcode(dns_server: Dns) -> None:
    await dns_server.udp(f"orders.{ZONE}", "A")
    await dns_server.udp(f"orders.{ZONE}", "A")
    await dns_server.udp(f"nope.{ZONE}", "SRV")
    sample = dns_server.metrics.registry.get_sample_value
    assert sample("discobridge_dns_queries_total", {"qtype": "A", "rcode": "NOERROR"}) == 2
    assert sample("discobridge_dns_queries_total", {"qtype": "SRV", "rcode": "NXDOMAIN"}) == 1


async def test_answers_follow_a_new_snapshot(dns_server: Dns) -> None:
    assert sorted(rrset_values(await dns_server.udp(f"orders.{ZONE}"), "A")) == ["10.0.0.2", "10.0.0.3", "10.0.0.6"]
    dns_server.publish([endpoint("orders", 19)])
    assert rrset_values(await dns_server.udp(f"orders.{ZONE}"), "A") == ["10.0.0.20"]
    assert (await dns_server.udp(f"sick.{ZONE}")).rcode() == dns.rcode.NXDOMAIN


async def test_serves_on_ipv6_loopback_and_several_addresses(server: Dns) -> None:
    try:
        socket.socket(socket.AF_INET6, socket.SOCK_DGRAM).close()
    except OSError:
        pytest.skip("no IPv6 on this machine")
    frontend = DnsFrontend(
        store=server.store,
        metrics=Metrics.create(),
        listen=[HostPort("::1", 0), HostPort("127.0.0.1", 0)],
        udp_batching=server.frontend.udp_batching,
    )
    server.publish(ESTATE)
    await frontend.start()
    try:
        v6, v4 = frontend.addresses
        for host, port in ((v6.host, v6.port), (v4.host, v4.port)):
            query = dns.message.make_query(f"orders.{ZONE}", "A")
            udp = await dns.asyncquery.udp(query, host, port=port, timeout=2)
            tcp = await dns.asyncquery.tcp(query, host, port=port, timeout=2)
            assert (
                sorted(rrset_values(udp, "A")) == sorted(rrset_values(tcp, "A")) == ["10.0.0.2", "10.0.0.3", "10.0.0.6"]
            )
    finally:
        await frontend.stop()


async def test_the_ns_name_resolves_to_the_configured_addresses_or_the_listen_ones(
    fake_aws: FakeAws, estate: Estate, aio_session: AioSession
) -> None:
    estate.web_service("prod", "orders")
    async with running(fake_aws.url, aio_session) as daemon:
        assert await daemon.store.wait_for(0, timeout=10) is not None
        port, zone = daemon.dns.addresses[0].port, daemon.config.dns.zone
        ns = await dns.asyncquery.udp(dns.message.make_query(zone, "NS"), "127.0.0.1", port=port, timeout=2)
        assert rrset_values(ns, "NS") == [f"ns.{zone}."]
        a = await dns.asyncquery.udp(dns.message.make_query(f"ns.{zone}", "A"), "127.0.0.1", port=port, timeout=2)
        assert rrset_values(a, "A") == ["127.0.0.1"]  # the listen address: not a wildcard
    dns_table = {"ns_name": "dns1.disco.test", "ns_addresses": ["10.0.1.53", "10.0.2.53", "fd00::53"]}
    async with running(fake_aws.url, aio_session, dns=dns_table) as daemon:
        assert await daemon.store.wait_for(0, timeout=10) is not None
        port, zone = daemon.dns.addresses[0].port, daemon.config.dns.zone

        async def ask(name: str, rdtype: str) -> list[str]:
            reply = await dns.asyncquery.udp(dns.message.make_query(name, rdtype), "127.0.0.1", port=port, timeout=2)
            return sorted(rrset_values(reply, rdtype))

        assert await ask(zone, "NS") == ["dns1.disco.test."]
        assert await ask("dns1.disco.test", "A") == ["10.0.1.53", "10.0.2.53"]
        assert await ask("dns1.disco.test", "AAAA") == ["fd00::53"]
        assert (await ask(zone, "SOA"))[0].startswith("dns1.disco.test. hostmaster.disco.test.")


async def test_the_ns_name_is_reserved_even_from_a_service_called_ns(server: Dns) -> None:
    server.publish([endpoint("ns", 1), *ESTATE])
    reply = await server.udp(f"ns.{ZONE}", "A")
    assert reply.rcode() == dns.rcode.NOERROR and not reply.answer  # no address known: NODATA, never a task's
    assert rrset_values(await server.udp(f"_ns._tcp.{ZONE}", "SRV"), "SRV")  # the service keeps its other names
    snapshot = server.store.current
    assert snapshot is not None and any("zone's name server" in w for w in snapshot.warnings)


async def test_account_and_region_names_and_a_cluster_named_like_an_account(server: Dns) -> None:
    server.publish(
        [
            make_endpoint("orders", 1, cluster="main"),  # local/us-east-1
            make_endpoint("orders", 2, cluster="main", account="prod", region="eu-west-1", az="eu-west-1a"),
            make_endpoint("orders", 3, cluster="prod", account="staging"),  # a cluster called like an account
        ]
    )
    ports = {name: sorted(i.port for r in (await server.udp(f"orders.{name}.{ZONE}", "SRV")).answer for i in r)
             for name in ("local", "eu-west-1", "us-east-1", "staging", "main", "prod")}  # fmt: skip
    assert ports == {
        "local": [32769], "eu-west-1": [32770], "us-east-1": [32769, 32771], "staging": [32771],
        "main": [32769, 32770],
        "prod": [32771],  # the cluster keeps S.prod.Z: it had it before accounts named anything
    }  # fmt: skip
    assert server.store.current is not None
    assert (
        "cluster 'prod' and account 'prod' share the DNS label 'prod': orders.prod answers for cluster 'prod' only"
        in (server.store.current.warnings)
    )


async def test_one_address_in_two_accounts_gets_two_srv_targets_even_when_their_names_are_long(server: Dns) -> None:
    same = {"host_ip": "fd00:1:2:3:4:5:6:7", "host_port": 8080, "task_arn": "", "source": "cloudmap"}
    long_names = ("a" * 60 + "-one", "a" * 60 + "-two")  # alike for far more than a label's 63 bytes
    server.publish([make_endpoint("billing", n, account=name, **same) for n, name in enumerate(long_names)])
    response = await server.udp(f"_billing._tcp.{ZONE}", "SRV")
    targets = sorted(str(item.target) for rrset in response.answer for item in rrset)
    assert len(targets) == 2 and targets[0] != targets[1]
    assert all(len(t.split(".")[0]) <= 63 for t in targets)
    for target in targets:
        assert rrset_values(await server.udp(target, "AAAA"), "AAAA") == ["fd00:1:2:3:4:5:6:7"]

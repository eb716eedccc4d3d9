"""Hostile clients against the daemon as a process: what they can make it hold is bounded (RSS and
descriptors measured on the daemon under each attack, the attack bounded in time and count),
and real clients keep getting answers meanwhile."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import resource
import socket
import struct
import time
import urllib.request
import zlib
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import dns.asyncquery
import dns.message
import dns.rcode
import pytest

from discobridge.fakeaws.estate import Estate
from discobridge.fakeaws.server import FakeAws
from tests.helpers import daemon_process, events, example_config, read_until

ZONE = "discobridge.internal"


@dataclass
class Target:
    pid: int
    dns_port: int
    http: str

    def rss_mb(self) -> float:
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        raise AssertionError("no VmRSS")

    def descriptors(self) -> int:
        return len(os.listdir(f"/proc/{self.pid}/fd"))

    def cpu_s(self) -> float:
        fields = Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@contextlib.contextmanager
def running_daemon(
    fake_aws: FakeAws, estate: Estate, tmp_path: Path, open_files: int | None = None
) -> Iterator[Target]:
    estate.web_service("prod", "orders", hosts=2)
    config = example_config(tmp_path, fake_aws.url)
    config.write_text(config.read_text().replace("drain_s = 5", "drain_s = 0"))
    env = {**os.environ, "AWS_EC2_METADATA_DISABLED": "true"}

    def limit() -> None:
        if open_files is not None:
            resource.setrlimit(resource.RLIMIT_NOFILE, (open_files, open_files))

    with daemon_process(["run", "-c", str(config)], env, preexec_fn=limit) as process:
        seen = events(read_until(process.stderr, "snapshot_first_published"))
        dns_port = int(str(seen["dns_listening"]["addresses"][0]).rsplit(":", 1)[1])  # type: ignore[index]
        yield Target(process.pid, dns_port, f"http://{seen['http_listening']['address']}")


@pytest.fixture(autouse=True)
def many_descriptors() -> None:
    """This test process opens hundreds of connections itself."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, 8192)), hard))


def query(name: str = f"orders.{ZONE}") -> bytes:
    wire = dns.message.make_query(name, "A").to_wire()
    return struct.pack("!H", len(wire)) + wire


async def answers(target: Target, transport: str = "udp") -> bool:
    request = dns.message.make_query(f"orders.{ZONE}", "A")
    send = dns.asyncquery.udp if transport == "udp" else dns.asyncquery.tcp
    reply = await send(request, "127.0.0.1", port=target.dns_port, timeout=2)
    return reply.rcode() == dns.rcode.NOERROR and bool(reply.answer)


async def healthz(target: Target) -> float:
    """Seconds /healthz took to answer 200, asked from a thread of its own: what the test's own
    event loop is busy with (sending the attack) never counts against the daemon."""

    def ask() -> float:
        started = time.monotonic()
        with urllib.request.urlopen(target.http + "/healthz", timeout=10) as response:
            assert response.status == 200
        return time.monotonic() - started

    return await asyncio.to_thread(ask)


async def test_dns_tcp_clients_that_pipeline_and_never_read_cannot_grow_memory(
    fake_aws: FakeAws, estate: Estate, tmp_path: Path
) -> None:
    with running_daemon(fake_aws, estate, tmp_path) as target:
        before = target.rss_mb()
        pipelined = query() * (256 * 1024 // len(query()))  # ~256 KB of queries, replies never read
        writers = []
        for _ in range(20):
            _, writer = await asyncio.open_connection("127.0.0.1", target.dns_port)
            writer.transport.set_write_buffer_limits(high=1 << 30)  # our side never blocks
            writer.write(pipelined)
            writers.append(writer)
        grown = 0.0
        for _ in range(25):  # the attack lasts 5 s: the daemon's RSS is sampled through it
            await asyncio.sleep(0.2)
            grown = max(grown, target.rss_mb() - before)
        assert await answers(target) and await answers(target, "tcp")
        for writer in writers:
            writer.transport.abort()
    assert grown < 40, f"{grown:.0f} MB held for 20 clients that do not read (was ~21 MB each)"


async def test_dns_tcp_slots_held_by_trickling_clients_go_to_real_ones(
    fake_aws: FakeAws, estate: Estate, tmp_path: Path
) -> None:
    with running_daemon(fake_aws, estate, tmp_path) as target:
        trickling = [await asyncio.open_connection("127.0.0.1", target.dns_port) for _ in range(520)]
        for _, writer in trickling:
            writer.write(b"\x00")  # the first byte of a length that never completes
        for _ in range(3):
            await asyncio.sleep(0.5)
            for _, writer in trickling:
                if not writer.is_closing():
                    writer.write(b"\x00")
            assert await answers(target, "tcp")  # a slot is made for a real client at once
        for _, writer in trickling:
            writer.transport.abort()


async def test_slow_oversized_http_heads_hold_neither_memory_nor_descriptors(
    fake_aws: FakeAws, estate: Estate, tmp_path: Path
) -> None:
    header = b"X-Padding: " + b"p" * (8 * 1024 - 14) + b"\r\n"
    with running_daemon(fake_aws, estate, tmp_path) as target:
        before_mb, before_fds = target.rss_mb(), target.descriptors()
        host, port = target.http.removeprefix("http://").split(":")
        connections = []
        for _ in range(400):
            reader, writer = await asyncio.open_connection(host, int(port))
            writer.write(b"GET /v1/services HTTP/1.1\r\nHost: x\r\n" + header * 98)  # and no blank line
            connections.append((reader, writer))
        # Each is refused with 431 and closed (a client still sending may see the close as a reset).
        outcomes = await asyncio.gather(
            *(asyncio.wait_for(r.read(200), 10) for r, _ in connections), return_exceptions=True
        )
        grown = target.rss_mb() - before_mb
        refused = [isinstance(o, ConnectionError) or bytes(o).startswith(b"HTTP/1.1 431") for o in outcomes]
        assert all(refused), outcomes[:2]
        for _, writer in connections:
            writer.transport.abort()
        assert await healthz(target) < 1.0
        await asyncio.sleep(0.5)  # the server closes its side of each refused connection
        assert target.descriptors() <= before_fds + 10
    assert grown < 60, f"{grown:.0f} MB for 400 unfinished 784 KB heads (was 615 MB)"


async def test_partial_requests_beyond_the_descriptor_limit_leave_health_dns_and_aws_working(
    fake_aws: FakeAws, estate: Estate, tmp_path: Path
) -> None:
    # A hard limit of 1,024 descriptors (a common default): 900 partial requests once took them all.
    with running_daemon(fake_aws, estate, tmp_path, open_files=1024) as target:
        host, port = target.http.removeprefix("http://").split(":")
        partial = []
        for _ in range(900):
            _, writer = await asyncio.open_connection(host, int(port))
            writer.write(b"GET /v1/services HTTP/1.1\r\nHost: x\r\n")
            partial.append(writer)
        assert await healthz(target) < 1.0  # the longest-idle connection made room
        assert await answers(target, "tcp") and await answers(target)
        assert target.descriptors() < 1024 - 100  # room kept for AWS, listeners and files
        for writer in partial:
            writer.transport.abort()


def bomb() -> bytes:
    """A gzip body of about 1 MB that inflates to about 1 GB."""
    compressor = zlib.compressobj(9, zlib.DEFLATED, 31)
    zeros = bytes(1 << 20)
    return b"".join(compressor.compress(zeros) for _ in range(1024)) + compressor.flush()


async def test_gzip_bombs_are_never_inflated(fake_aws: FakeAws, estate: Estate, tmp_path: Path) -> None:
    body = bomb()
    headers = {"Content-Encoding": "gzip", "Content-Type": "application/json"}
    with running_daemon(fake_aws, estate, tmp_path) as target:
        cpu = target.cpu_s()
        async with aiohttp.ClientSession() as client:

            async def chunks() -> AsyncIterator[bytes]:
                for start in range(0, len(body), 65536):  # no Content-Length: chunked
                    yield body[start : start + 65536]

            async def post(chunked: bool) -> int:
                data = chunks() if chunked else body
                async with client.post(target.http + "/eureka/apps/ORDERS", data=data, headers=headers) as response:
                    return response.status

            posting = asyncio.gather(*(post(chunked=n % 2 == 1) for n in range(8)), return_exceptions=True)
            waits = [await healthz(target) for _ in range(5)]
            outcomes = await posting
        used = target.cpu_s() - cpu
    assert all(o in (413, 204) or isinstance(o, aiohttp.ClientError) for o in outcomes), outcomes
    assert 413 in outcomes  # a body with a length over the cap is refused unread
    assert max(waits) < 0.5 and used < 2.0, f"/healthz waited {max(waits):.2f} s; {used:.1f} s of CPU"


async def test_small_abuses_get_clean_answers(fake_aws: FakeAws, estate: Estate, tmp_path: Path) -> None:
    with running_daemon(fake_aws, estate, tmp_path) as target:
        async with aiohttp.ClientSession(auto_decompress=False) as client:
            async with client.get(target.http + "/v1/services/orders?index=" + "9" * 4301) as response:
                assert response.status == 400 and "index" in (await response.json())["error"]
            refused = {"Accept": "application/json", "Accept-Encoding": "gzip;q=0, identity"}
            async with client.get(target.http + "/eureka/apps", headers=refused) as response:
                assert response.status == 200 and "Content-Encoding" not in response.headers
                json.loads(await response.read())
        labels = [b"a" * 63] * 3 + [b"b" * 62]  # 256 octets in wire form: one too many
        wire = b"".join(bytes([len(label)]) + label for label in labels) + b"\x00"
        packet = struct.pack("!6H", 0x1234, 0x0100, 1, 0, 0, 0) + wire + struct.pack("!HH", 1, 1)
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
            udp.settimeout(2)
            udp.sendto(packet, ("127.0.0.1", target.dns_port))
            reply = udp.recv(512)
        assert struct.unpack_from("!H", reply, 2)[0] & 0xF == dns.rcode.FORMERR

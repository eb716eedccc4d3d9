"""One helper per test idea, shared by every test file: a fake clock, an endpoint builder, a store
with the renderers the app registers, and publishing to it."""

from __future__ import annotations

import contextlib
import json
import socket
import subprocess
import sys
from collections.abc import Iterable, Iterator, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry

from discobridge.model import Endpoint, Health, PartitionKey, PartitionResult
from discobridge.render import Renderer
from discobridge.render.dns import DnsRenderer
from discobridge.render.eureka import EurekaRenderer
from discobridge.render.prometheus import PrometheusRenderer
from discobridge.render.resolver import ResolverRenderer
from discobridge.render.status import StatusSections
from discobridge.store import SnapshotStore

ROOT = Path(__file__).resolve().parent.parent
ACCOUNT_ID = "123456789012"
PROD = PartitionKey("ecs", "local", "us-east-1", "cluster", "prod")
# The labels of the local account's AWS call metrics in tests ([aws] region us-east-1).
LOCAL_AWS = {"account": "local", "region": "us-east-1"}


def partition(name: str, source: str = "ecs", account: str = "local", region: str = "us-east-1") -> PartitionKey:
    unit = "cluster" if source == "ecs" else "namespace"
    return PartitionKey(source, account, region, unit, name)


class FakeClock:
    """A clock a test moves by hand: `clock.now += 30`."""

    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


class ShiftedUtc:
    """The UTC wall clock, moved ahead by hand (`clock.shift += timedelta(minutes=50)`): what
    expires credentials in a test."""

    def __init__(self) -> None:
        self.shift = timedelta()

    def __call__(self) -> datetime:
        return datetime.now(UTC) + self.shift


def counted(registry: CollectorRegistry, name: str, **labels: str) -> float:
    """A metric's total over every label set that has `labels`."""
    total = 0.0
    for family in registry.collect():
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                total += sample.value
    return total


def reconciled_since_events(source: Any) -> bool:
    """Whether an ECS source's events flow and each of its clusters has had a full poll that
    began after they started: from then on, changes reach it by events alone."""
    since = source.events.live_since if source.events is not None else None
    return since is not None and all(p.reconciled_at is not None and p.reconciled_at >= since for p in source.known())


async def dns_records(daemon: Any, name: str, rdtype: str) -> list[str]:
    """The sorted answer records for `name` in a running daemon's zone, asked over UDP."""
    import dns.asyncquery  # noqa: PLC0415 - only tests that run a daemon need it
    import dns.message  # noqa: PLC0415

    query = dns.message.make_query(f"{name}.{daemon.config.dns.zone}", rdtype)
    reply = await dns.asyncquery.udp(query, "127.0.0.1", port=daemon.dns.addresses[0].port, timeout=2)
    return sorted(item.to_text() for rrset in reply.answer for item in rrset)


def endpoint(service: str, n: int, **fields: Any) -> Endpoint:
    """The n-th endpoint of a test estate: a bridge-mode ECS task on its own host and port;
    any field can be given instead."""
    cluster = fields.get("cluster", "prod")
    defaults: dict[str, Any] = {
        "host_ip": f"10.0.{n // 250}.{n % 250 + 1}",
        "host_port": 32768 + n,
        "health": Health.HEALTHY,
        "az": "us-east-1a",
        "source": "ecs",
        "cluster": cluster,
        "task_arn": f"arn:aws:ecs:us-east-1:{ACCOUNT_ID}:task/{cluster}/{n:032x}",
        "container": "web",
        "account": "local",
        "region": "us-east-1",
    }
    return Endpoint(service=service, **{**defaults, **fields})


def renderers(zone: str = "disco.test", ttl_s: int = 5, **overrides: Renderer[Any]) -> list[Renderer[Any]]:
    """The renderers the app registers, for a zone and TTL; pass dns=/eureka= to replace one."""
    chosen: dict[str, Renderer[Any]] = {
        "dns": DnsRenderer(zone=zone, ttl_s=ttl_s),
        "resolver": ResolverRenderer(),
        "status": StatusSections(),
        "eureka": EurekaRenderer(),
        "prometheus": PrometheusRenderer(),
        **overrides,
    }
    return list(chosen.values())


def make_store(
    *, keys: Sequence[PartitionKey] = (PROD,), clock: FakeClock | None = None, **options: Any
) -> SnapshotStore:
    """A store that expects `keys` (listed, as the app lists configured clusters), with the app's
    renderers; `options` go to renderers() (zone=, ttl_s=, dns=, eureka=)."""
    scopes = {k.scope: k.scope for k in keys}
    extra = {"clock": clock} if clock is not None else {}
    store = SnapshotStore(renderers=renderers(**options), scopes=scopes, **extra)
    for scope in scopes:
        store.listed(scope, [k for k in keys if k.scope == scope])
    return store


def publish(
    store: SnapshotStore, endpoints: Iterable[Endpoint], key: PartitionKey = PROD, at: float | None = None
) -> bool:
    """Publish one partition's endpoints at once, as a good refresh at `at` (the store's now)."""
    return store.publish(key, PartitionResult(tuple(endpoints), store.now() if at is None else at))


def system_tool(*names: str, package: str) -> str:
    """The path of a system tool a test drives (dig, chromium, prometheus): where it is missing the
    test is skipped, except in CI (.ci/run installs them), where that is a failure."""
    import os  # noqa: PLC0415 - only the tests that need a tool ask
    import shutil  # noqa: PLC0415

    import pytest  # noqa: PLC0415

    found = next((path for name in names if (path := shutil.which(name))), None)
    if found is None:
        if os.environ.get("CI"):
            pytest.fail(f"{names[0]} is missing: .ci/run installs Debian's {package}")
        pytest.skip(f"{names[0]} is not installed (apt-get install {package})")
    return found


# ---- the daemon as a process -------------------------------------------------------------------
COMMAND = [sys.executable, "-m", "discobridge"]


def read_until(stream: object, marker: str, limit: int = 400) -> list[str]:
    """Read lines until one contains `marker` (the process's own signal that it got there)."""
    lines: list[str] = []
    for _ in range(limit):
        line = stream.readline()  # type: ignore[attr-defined]
        if not line:
            break
        lines.append(line)
        if marker in line:
            return lines
    raise AssertionError(f"{marker!r} never appeared in:\n{''.join(lines)}")


@contextlib.contextmanager
def daemon_process(args: list[str], env: dict[str, str], **popen: Any) -> Iterator[subprocess.Popen[str]]:
    """`discobridge <args>` with its stderr (the JSON log) piped; killed if a test leaves it running."""
    process = subprocess.Popen([*COMMAND, *args], stderr=subprocess.PIPE, text=True, env=env, **popen)
    try:
        yield process
    finally:
        if process.poll() is None:
            process.kill()
        process.wait(timeout=10)
        process.stderr.close()  # type: ignore[union-attr]


def free_port(kind: socket.SocketKind) -> int:
    with socket.socket(socket.AF_INET, kind) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def held_dns_port() -> Iterator[int]:
    """A port on 127.0.0.1 held on both UDP and TCP (as a DNS server takes it) while the block runs."""
    for _ in range(100):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp, socket.socket() as tcp:
            udp.bind(("127.0.0.1", 0))
            port = int(udp.getsockname()[1])
            try:
                tcp.bind(("127.0.0.1", port))
            except OSError:  # the kernel's free UDP port is in use on TCP: take another
                continue
            tcp.listen()
            yield port
            return
    raise OSError("no port on 127.0.0.1 free for both UDP and TCP")


def free_dns_port() -> int:
    """A port free on both UDP and TCP just now, for a DNS server to take."""
    with held_dns_port() as port:
        return port


def example_config(tmp_path: Path, endpoint_url: str) -> Path:
    """config.example.toml pointed at the fake AWS, polling fast, listening on loopback only."""
    text = (
        (ROOT / "config.example.toml")
        .read_text()
        .replace('# endpoint_url = "http://127.0.0.1:5000"', f'endpoint_url = "{endpoint_url}"')
        .replace("poll_interval_s = 10", "poll_interval_s = 0.2")
        .replace('listen = ["0.0.0.0:53"]', 'listen = ["127.0.0.1:0"]')
        .replace('listen = "0.0.0.0:8080"', 'listen = "127.0.0.1:0"')
    )
    path = tmp_path / "config.toml"
    path.write_text(text)
    return path


def events(lines: list[str]) -> dict[str, dict[str, object]]:
    parsed = (json.loads(line) for line in lines if line.startswith("{"))
    return {event["event"]: event for event in parsed}

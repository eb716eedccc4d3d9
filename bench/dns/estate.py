"""The synthetic estate every DNS benchmark serves: services with endpoints, and the query mix."""

from __future__ import annotations

import random

from common import serving_store

from discobridge.model import Endpoint, Health
from discobridge.store import SnapshotStore

ZONE = "bench.test"
SERVICES = 300
PER_SERVICE = 3


def endpoints() -> tuple[Endpoint, ...]:
    """SERVICES services with PER_SERVICE bridge-mode endpoints each, on distinct hosts."""
    found = []
    for s in range(SERVICES):
        for e in range(PER_SERVICE):
            n = s * PER_SERVICE + e
            found.append(
                Endpoint(
                    service=f"svc-{s}",
                    host_ip=f"10.{n // 65536}.{n // 256 % 256}.{n % 256}",
                    host_port=32768 + n % 20000,
                    health=Health.HEALTHY,
                    az="us-east-1a",
                    source="ecs",
                    cluster="bench",
                    task_arn=f"arn:aws:ecs:us-east-1:1:task/bench/{n:032x}",
                )
            )
    return tuple(found)


def store() -> SnapshotStore:
    """A store holding one snapshot of the estate, as the daemon would after a poll."""
    return serving_store(endpoints(), zone=ZONE)


def queries(count: int = 10_000, seed: int = 7) -> list[str]:
    """dnsperf input lines: 70% A on service names, 30% SRV on their RFC 2782 names."""
    rng = random.Random(seed)
    lines = []
    for _ in range(count):
        s = rng.randrange(SERVICES)
        lines.append(f"svc-{s}.{ZONE} A" if rng.random() < 0.7 else f"_svc-{s}._tcp.{ZONE} SRV")
    return lines


def zone_file() -> str:
    """The same records as a zone file, for a native server to serve."""
    snapshot = store().current
    assert snapshot is not None
    lines = [
        f"$ORIGIN {ZONE}.",
        "$TTL 5",
        f"@ SOA ns.{ZONE}. hostmaster.{ZONE}. 1 60 30 3600 5",
        f"@ NS ns.{ZONE}.",
        "ns A 127.0.0.1",
    ]
    for service in snapshot.services.values():
        for e in service.endpoints:
            target = f"{e.task_id}.{service.name}"
            lines += [
                f"{service.name} A {e.host_ip}",
                f'{service.name} TXT "{e.address}"',
                f"{service.name} SRV 1 1 {e.host_port} {target}",
                f"_{service.name}._tcp SRV 1 1 {e.host_port} {target}",
                f"{target} A {e.host_ip}",
            ]
    return "\n".join(lines) + "\n"

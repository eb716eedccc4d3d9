"""The registry every Eureka benchmark serves: 100 services x 10 bridge-mode tasks = 1,000 instances."""

from __future__ import annotations

from discobridge.model import Endpoint, Health, SourceName, SourceResult
from discobridge.render.dns import DnsRenderer
from discobridge.snapshot import Renderers, SnapshotStore

SERVICES, PER_SERVICE = 100, 10


def store() -> SnapshotStore:
    endpoints = tuple(
        Endpoint(
            service=f"service-{s:03d}",
            host_ip=f"10.0.{s}.{e + 10}",
            host_port=32768 + s * PER_SERVICE + e,
            health=Health.HEALTHY if e else Health.UNHEALTHY,
            az=f"us-east-1{'ab'[e % 2]}",
            source=SourceName.ECS,
            cluster="prod",
            task_arn=f"arn:aws:ecs:us-east-1:123456789012:task/prod/{s * PER_SERVICE + e:032x}",
        )
        for s in range(SERVICES)
        for e in range(PER_SERVICE)
    )
    result = SnapshotStore(sources=[SourceName.ECS], renderers=Renderers(dns=DnsRenderer(zone="b.test", ttl_s=5)))
    result.publish(SourceResult(SourceName.ECS, endpoints, 0.0))
    return result

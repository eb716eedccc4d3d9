"""The registry every Eureka benchmark serves: 100 services x 10 bridge-mode tasks = 1,000 instances."""

from __future__ import annotations

from common import serving_store

from discobridge.model import Endpoint, Health
from discobridge.store import SnapshotStore

SERVICES, PER_SERVICE = 100, 10


def store() -> SnapshotStore:
    endpoints = tuple(
        Endpoint(
            service=f"service-{s:03d}",
            host_ip=f"10.0.{s}.{e + 10}",
            host_port=32768 + s * PER_SERVICE + e,
            health=Health.HEALTHY if e else Health.UNHEALTHY,
            az=f"us-east-1{'ab'[e % 2]}",
            source="ecs",
            cluster="prod",
            task_arn=f"arn:aws:ecs:us-east-1:123456789012:task/prod/{s * PER_SERVICE + e:032x}",
        )
        for s in range(SERVICES)
        for e in range(PER_SERVICE)
    )
    return serving_store(endpoints, zone="b.test")

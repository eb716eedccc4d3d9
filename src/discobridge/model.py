"""Discovery data shared by sources, snapshot and frontends: immutable and free of I/O."""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum


class Health(StrEnum):
    HEALTHY = "healthy"
    UNHEALTHY = "unhealthy"
    DRAINING = "draining"


class SourceName(StrEnum):
    ECS = "ecs"
    CLOUDMAP = "cloudmap"


_NOT_NAME_CHAR = re.compile(r"[^a-z0-9-]")


def normalize_service_name(raw: str) -> str:
    """Lowercase `raw` and replace every character outside [a-z0-9-] with '-' (a DNS-safe label)."""
    return _NOT_NAME_CHAR.sub("-", raw.lower())


@dataclass(frozen=True, slots=True)
class Endpoint:
    """One reachable address of a service: where a client connects, and where it came from."""

    service: str
    host_ip: str
    host_port: int
    health: Health
    az: str
    source: SourceName
    cluster: str = ""
    task_arn: str = ""
    container: str = ""
    container_instance: str = ""
    instance_id: str = ""

    @property
    def task_id(self) -> str:
        return self.task_arn.rsplit("/", 1)[-1]

    @property
    def address(self) -> str:
        return f"{self.host_ip}:{self.host_port}"


@dataclass(frozen=True, slots=True)
class Service:
    """A named service and its endpoints, sorted by (ip, port) so rendered bytes are deterministic."""

    name: str
    endpoints: tuple[Endpoint, ...]

    @property
    def clusters(self) -> tuple[str, ...]:
        return tuple(sorted({e.cluster for e in self.endpoints if e.cluster}))

    @property
    def serving(self) -> tuple[Endpoint, ...]:
        """The healthy endpoints; when none is, the unhealthy ones (fail open, as Route 53 and an
        ALB do: a broken health check must not take a service down). Draining ones never."""
        healthy = tuple(e for e in self.endpoints if e.health is Health.HEALTHY)
        return healthy or tuple(e for e in self.endpoints if e.health is Health.UNHEALTHY)


@dataclass(frozen=True, slots=True)
class SourceResult:
    """A complete, successful refresh of one source; `fetched_at` is on the poller's clock."""

    source: SourceName
    endpoints: tuple[Endpoint, ...]
    fetched_at: float
    warnings: tuple[str, ...] = ()

"""Discovery data shared by sources, snapshot and frontends: immutable and free of I/O."""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum


class Health(StrEnum):
    HEALTHY = "healthy"
    UNHEALTHY = "unhealthy"
    DRAINING = "draining"


_NOT_NAME_CHAR = re.compile(r"[^a-z0-9-]")

# The account the daemon's own credentials reach ([aws] account_name).
LOCAL_ACCOUNT = "local"


def normalize_service_name(raw: str) -> str:
    """Lowercase `raw` and replace every character outside [a-z0-9-] with '-' (a DNS-safe label)."""
    return _NOT_NAME_CHAR.sub("-", raw.lower())


@dataclass(frozen=True, slots=True, order=True)
class PartitionKey:
    """One unit of refresh, freshness and failure: an ECS cluster or a Cloud Map namespace, of one
    account and region. A value, so a new source or a new account needs no edit of the core."""

    source: str  # the mechanism that fills it: "ecs", "cloudmap"
    account: str  # the configured account name
    region: str
    unit: str  # what `name` names: "cluster", "namespace"
    name: str

    @property
    def id(self) -> str:
        """A stable identifier for labels and files: source/account/region/name."""
        return f"{self.source}/{self.account}/{self.region}/{self.name}"

    @property
    def scope(self) -> str:
        """The source, account and region this partition belongs to (its listing's id)."""
        return scope_id(self.source, self.account, self.region)

    def __str__(self) -> str:
        return f"{self.source} {self.unit} {self.name} in {self.account}/{self.region}"


def scope_id(source: str, account: str, region: str) -> str:
    """Names the partitions of one source in one account and region: what a listing discovers."""
    return f"{source}/{account}/{region}"


@dataclass(frozen=True, slots=True)
class Endpoint:
    """One reachable address of a service: where a client connects, and where it came from."""

    service: str
    host_ip: str
    host_port: int
    health: Health
    az: str
    source: str  # the partition's source: "ecs", "cloudmap"
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
        return f"[{self.host_ip}]:{self.host_port}" if ":" in self.host_ip else f"{self.host_ip}:{self.host_port}"


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
class PartitionResult:
    """What one good refresh of a partition found; `refreshed_at` is on the store's clock and is
    the time AWS last confirmed this data, whether or not it changed."""

    endpoints: tuple[Endpoint, ...]
    refreshed_at: float
    warnings: tuple[str, ...] = ()

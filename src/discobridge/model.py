"""Discovery data shared by sources, snapshot and frontends: immutable and free of I/O."""

from __future__ import annotations

import ipaddress
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


# What XML 1.0 cannot carry (C0 controls but tab, newline and return; lone surrogates; U+FFFE and
# U+FFFF): any of it in data from AWS would make the Eureka XML unparseable for every client.
_NOT_XML_CHAR = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")
MAX_TEXT = 1024  # a Cloud Map attribute value's own limit; nothing we publish is longer


def clean_text(text: str) -> str:
    """`text` as every frontend can carry it: what XML 1.0 cannot hold replaced by U+FFFD, and no
    longer than MAX_TEXT characters. The one place data from AWS is made safe to publish."""
    return _NOT_XML_CHAR.sub("\ufffd", text[:MAX_TEXT])


def canonical_ip(text: str) -> str | None:
    """The canonical form of an IPv4 or IPv6 address ("10.0.0.1", "fd00::1"); None if `text` is
    not one exactly: no spaces, no leading zeros (which inet_aton would read as octal)."""
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        return None


def make_endpoint(
    *,
    service: str,
    host_ip: str,
    host_port: object,  # checked here: files and attributes carry anything
    health: Health,
    az: str,
    source: str,
    cluster: str = "",
    task_arn: str = "",
    container: str = "",
    container_instance: str = "",
    instance_id: str = "",
) -> Endpoint | str:
    """An Endpoint from data a source read, validated and made canonical in one place, so every
    frontend publishes the same address; a string is the reason it must be skipped."""
    ip = canonical_ip(host_ip)
    if ip is None:
        return "bad_ip"
    if isinstance(host_port, bool) or not isinstance(host_port, int) or not 0 < host_port < 65536:
        return "bad_port"
    if not service or len(service) > 255 or normalize_service_name(service) != service:
        return "bad_name"  # (a name over 63 characters is served, but not in DNS: render.dns)
    return Endpoint(
        service=service,
        host_ip=ip,
        host_port=host_port,
        health=health,
        az=clean_text(az),
        source=source,
        cluster=clean_text(cluster),
        task_arn=clean_text(task_arn),
        container=clean_text(container),
        container_instance=clean_text(container_instance),
        instance_id=clean_text(instance_id),
    )


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

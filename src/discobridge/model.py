"""Discovery data shared by sources, snapshot and frontends: immutable and free of I/O."""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable
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
    account: str = ""  # the configured name of the AWS account it is in ([aws] account_name)
    region: str = ""
    # The other named ports of the published container: (name, port a client connects to),
    # sorted by name. The main port is host_port; "main" is never one of these names.
    ports: tuple[tuple[str, int], ...] = ()

    def port(self, name: str) -> int | None:
        """The port named `name` ("main": host_port); None when this endpoint has none."""
        if name == MAIN_PORT:
            return self.host_port
        return next((port for known, port in self.ports if known == name), None)

    @property
    def known_cluster(self) -> str:
        """The cluster, when ECS itself says so (the task is known); "" for a cluster only a
        Cloud Map attribute claims, which whoever registers an instance may write."""
        return self.cluster if self.task_arn else ""

    @property
    def task_id(self) -> str:
        return self.task_arn.rsplit("/", 1)[-1]

    @property
    def address(self) -> str:
        return self.address_of(MAIN_PORT)

    def address_of(self, port_name: str) -> str:
        """ "host:port" of the port named `port_name` (an IPv6 host in brackets), which it has."""
        host = f"[{self.host_ip}]" if ":" in self.host_ip else self.host_ip
        return f"{host}:{self.port(port_name)}"


# What XML 1.0 cannot carry (C0 controls but tab, newline and return; lone surrogates; U+FFFE and
# U+FFFF): any of it in data from AWS would make the Eureka XML unparseable for every client.
_NOT_XML_CHAR = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")
MAX_TEXT = 1024  # a Cloud Map attribute value's own limit; nothing we publish is longer


def clean_text(text: str) -> str:
    """`text` as every frontend can carry it: what XML 1.0 cannot hold replaced by U+FFFD, and no
    longer than MAX_TEXT characters. The one place data from AWS is made safe to publish."""
    return _NOT_XML_CHAR.sub("\ufffd", text[:MAX_TEXT])


MAIN_PORT = "main"
# 62 at most: "_<name>" is one DNS label, and a label is 63 octets.
_PORT_NAME = re.compile(r"[a-z0-9]([a-z0-9-]{0,60}[a-z0-9])?")


def valid_port_name(name: str) -> bool:
    """A port name is a DNS label (it becomes `_<name>._tcp.S.Z`); "main" is the main port's."""
    return name != MAIN_PORT and _PORT_NAME.fullmatch(name) is not None


def canonical_ip(text: str) -> str | None:
    """The canonical form of an IPv4 or IPv6 address ("10.0.0.1", "fd00::1"); None if `text` is
    not one exactly: no spaces, no leading zeros (which inet_aton would read as octal)."""
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return None
    if getattr(address, "scope_id", None):
        return None  # "fe80::1%eth0" names an interface of some host: no address record can carry it
    return str(address)


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
    account: str = "",
    region: str = "",
    ports: Iterable[tuple[object, object]] = (),
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
        account=clean_text(account),
        region=clean_text(region),
        ports=_named_ports(ports),
    )


def _named_ports(ports: Iterable[tuple[object, object]]) -> tuple[tuple[str, int], ...]:
    """The well-formed (name, port) pairs, one per name, sorted; the rest dropped: a bad extra
    port never costs the endpoint its main one."""
    kept: dict[str, int] = {}
    for name, port in ports:
        if isinstance(name, str) and valid_port_name(name) and _is_port(port):
            kept[name] = port  # type: ignore[assignment]  # _is_port checked it
    return tuple(sorted(kept.items()))


def _is_port(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 0 < value < 65536


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
        return serving(self.endpoints)


def serving(endpoints: Iterable[Endpoint]) -> tuple[Endpoint, ...]:
    """Of `endpoints`, those that take traffic: see Service.serving."""
    endpoints = tuple(endpoints)
    healthy = tuple(e for e in endpoints if e.health is Health.HEALTHY)
    return healthy or tuple(e for e in endpoints if e.health is Health.UNHEALTHY)


@dataclass(frozen=True, slots=True)
class PartitionResult:
    """What one good refresh of a partition found; `refreshed_at` is on the store's clock and is
    the time AWS last confirmed this data, whether or not it changed."""

    endpoints: tuple[Endpoint, ...]
    refreshed_at: float
    warnings: tuple[str, ...] = ()

"""The names discobridge answers in its zone, and how a clash between two of them is settled.

The scheme (README "DNS names"), for service S, zone Z:

    S.Z          the service: S is [a-z0-9-] (normalised), so never starts with "_" nor holds a dot
    _S._tcp.Z    its SRV in RFC 2782 form: the leading underscore keeps these apart from all else
    S.C.Z        its endpoints in ECS cluster C; C comes only from endpoints ECS reported with a
                 task (what a Cloud Map instance claims as its cluster is shown, never a name)
    T.S.Z        one endpoint, the target of its SRV record: T is the ECS task id, or ip-port for
                 an endpoint without a task (Cloud Map), so Cloud Map never claims a task's name

Only a qualified name (S.C.Z) and a target (T.S.Z) share a shape; where one name is both, the
target keeps it (every SRV answer must resolve its targets) and a warning names both. Two clusters
whose names normalise to one label (Prod and prod, prod_x and prod-x) cannot both have it: the
first in sort order keeps it, and a warning names the others. Nothing is overwritten silently.
"""

from __future__ import annotations

from dataclasses import dataclass

from discobridge.model import Endpoint, Service, normalize_service_name

# Lower wins a clash. Service and RFC 2782 names cannot clash with anything by construction.
TARGET, QUALIFIED = 0, 1
_LONGEST_LABEL = "x" * 63  # the longest SRV target label: a service must leave room for it


@dataclass(frozen=True, slots=True)
class Claim:
    """Who a name is for, to settle and report a clash."""

    rank: int
    what: str  # for people: "task 0a1b... of service orders", "service x in cluster orders"


def carries(zone: str, service: str) -> bool:
    """Whether DNS can carry every name of `service` (labels of 63 bytes, names of 255 at most)."""
    return valid(f"_{service}._tcp.{zone}") and valid(f"{_LONGEST_LABEL}.{service}.{zone}")


def valid(name: str) -> bool:
    labels = name.split(".")
    return all(0 < len(label) <= 63 for label in labels) and len(name) + 2 <= 255


def target_label(endpoint: Endpoint) -> str:
    """The SRV target label: the task id, or ip-port when an endpoint has no task."""
    label = normalize_service_name(endpoint.task_id or f"{endpoint.host_ip}-{endpoint.host_port}")
    return label.strip("-")[:63] or "endpoint"


def target_claim(endpoint: Endpoint) -> Claim:
    what = f"task {endpoint.task_id}" if endpoint.task_arn else f"endpoint {endpoint.address}"
    return Claim(TARGET, f"{what} of service {endpoint.service}")


def cluster_labels(service: Service) -> tuple[dict[str, str], list[str]]:
    """The DNS label of each cluster that qualifies the service's names (clusters ECS reported
    with a task), and warnings for clusters that lost their label to another."""
    by_label: dict[str, list[str]] = {}
    for cluster in sorted({e.cluster for e in service.endpoints if e.cluster and e.task_arn}):
        by_label.setdefault(normalize_service_name(cluster), []).append(cluster)
    labels: dict[str, str] = {}
    warnings: list[str] = []
    for label, clusters in sorted(by_label.items()):
        labels[clusters[0]] = label
        if len(clusters) > 1:
            others = ", ".join(repr(c) for c in clusters[1:])
            warnings.append(
                f"clusters {clusters[0]!r} and {others} share the DNS label {label!r}: "
                f"{service.name}.{label} answers for {clusters[0]!r} only"
            )
    return labels, warnings


def clash_warning(name: str, kept: Claim, lost: Claim) -> str:
    return f"DNS name {name} is both {kept.what} and {lost.what}: it answers for {kept.what}"


def wins(new: Claim | None, old: Claim | None) -> bool:
    """Whether `new` takes a name `old` already has (the lower rank, then the first by name)."""
    if old is None or new is None:
        return False
    return (new.rank, new.what) < (old.rank, old.what)


def dotted(wire: bytes) -> str:
    """A wire-format name as text, for messages."""
    labels, offset = [], 0
    while offset < len(wire) and wire[offset]:
        length = wire[offset]
        labels.append(wire[offset + 1 : offset + 1 + length].decode("ascii", "replace"))
        offset += length + 1
    return ".".join(labels)

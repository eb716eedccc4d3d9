"""The immutable snapshot frontends read, and how it is built from the partitions' results."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, TypeVar, cast

from discobridge.model import Endpoint, PartitionKey, PartitionResult, Service
from discobridge.render import Renderer, ViewKey

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Snapshot:
    """What every frontend serves: the services, and their documents already rendered."""

    generation: int
    services: Mapping[str, Service]
    # The generation in which each service last changed: the index of a long poll on it.
    changed_at: Mapping[str, int]
    built_at: float
    views: Mapping[ViewKey[Any], Any]
    # Problems the build noticed in the data (DNS names that clashed, ...): shown in /healthz and
    # on the status page. A document family reports its own in a `warnings` attribute.
    warnings: tuple[str, ...] = ()

    def view(self, key: ViewKey[T]) -> T:
        """The documents one registered renderer made for this snapshot."""
        return cast(T, self.views[key])


def merge_services(results: Mapping[PartitionKey, PartitionResult]) -> dict[str, Service]:
    """Group every partition's endpoints by service, one per ip:port; an endpoint that names its
    task (ECS) wins over one that does not (Cloud Map), then the first partition in key order."""
    return ServiceMerger()(results)


class ServiceMerger:
    """merge_services, reusing the Service of every service whose contributions did not change
    (the same objects from the same partitions): a change to one task rebuilds one service, and
    the renderers recognise the others by identity."""

    def __init__(self) -> None:
        self._groups: dict[PartitionKey, tuple[tuple[Endpoint, ...], dict[str, tuple[Endpoint, ...]]]] = {}
        self._services: dict[str, tuple[tuple[tuple[Endpoint, ...], ...], Service]] = {}

    def __call__(self, results: Mapping[PartitionKey, PartitionResult]) -> dict[str, Service]:
        contributions: dict[str, list[tuple[Endpoint, ...]]] = {}
        groups = {}
        for key in sorted(results):
            endpoints = results[key].endpoints
            known = self._groups.get(key)
            grouped = known[1] if known is not None and known[0] is endpoints else _by_service(endpoints)
            groups[key] = (endpoints, grouped)
            for name, group in grouped.items():
                contributions.setdefault(name, []).append(group)
        services: dict[str, tuple[tuple[tuple[Endpoint, ...], ...], Service]] = {}
        for name in sorted(contributions):
            parts = tuple(contributions[name])
            known_service = self._services.get(name)
            if known_service is not None and _same_parts(known_service[0], parts):
                services[name] = (parts, known_service[1])
            else:
                services[name] = (parts, _merge(name, parts))
        self._groups, self._services = groups, services
        return {name: service for name, (_, service) in services.items()}


def _by_service(endpoints: tuple[Endpoint, ...]) -> dict[str, tuple[Endpoint, ...]]:
    grouped: dict[str, list[Endpoint]] = {}
    for endpoint in endpoints:
        grouped.setdefault(endpoint.service, []).append(endpoint)
    return {name: tuple(found) for name, found in grouped.items()}


def _same_parts(old: tuple[tuple[Endpoint, ...], ...], new: tuple[tuple[Endpoint, ...], ...]) -> bool:
    return len(old) == len(new) and all(a is b or a == b for a, b in zip(old, new, strict=True))


def _merge(name: str, parts: tuple[tuple[Endpoint, ...], ...]) -> Service:
    # One endpoint per address within an account and region (ECS and Cloud Map list the same
    # task), never across them: VPC CIDRs overlap (every default VPC is 172.31.0.0/16).
    seen: dict[tuple[str, str, str, int], Endpoint] = {}
    for group in parts:
        for endpoint in group:
            address = (endpoint.account, endpoint.region, endpoint.host_ip, endpoint.host_port)
            known = seen.get(address)
            if known is None or (endpoint.task_arn and not known.task_arn):
                seen[address] = endpoint
    return Service(name, tuple(sorted(seen.values(), key=_endpoint_order)))


def build_snapshot(
    results: Mapping[PartitionKey, PartitionResult],
    generation: int,
    built_at: float,
    renderers: Sequence[Renderer[Any]],
    previous: Snapshot | None = None,
    merger: ServiceMerger | None = None,
) -> Snapshot:
    """Merge the partitions' results into services and render every registered view of them."""
    services = MappingProxyType((merger or ServiceMerger())(results))
    changed_at = {
        name: previous.changed_at[name]
        if previous is not None and _unchanged(previous.services.get(name), service)
        else generation
        for name, service in services.items()
    }
    views = {
        renderer.key: renderer(services, generation, previous.views.get(renderer.key) if previous else None)
        for renderer in renderers
    }
    return Snapshot(
        generation=generation,
        services=services,
        changed_at=MappingProxyType(changed_at),
        built_at=built_at,
        views=MappingProxyType(views),
        warnings=tuple(w for documents in views.values() for w in getattr(documents, "warnings", ())),
    )


def _unchanged(old: Service | None, new: Service) -> bool:
    return old is new or old == new


def _endpoint_order(endpoint: Endpoint) -> tuple[int, tuple[int, ...], str, int]:
    # Numeric IPv4 order, so 10.0.0.9 sorts before 10.0.0.10; IPv6 after every IPv4.
    parts = endpoint.host_ip.split(".")
    if len(parts) == 4 and all(p.isdigit() for p in parts):
        return 4, tuple(int(p) for p in parts), "", endpoint.host_port
    return 6, (), endpoint.host_ip, endpoint.host_port

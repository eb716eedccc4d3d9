"""Services -> the HTTP resolver's JSON documents, as bytes with ETags, once per snapshot."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from discobridge.model import MAIN_PORT, Endpoint, Health, Service, serving
from discobridge.render import ViewKey
from discobridge.render.memo import PerService


@dataclass(frozen=True, slots=True)
class Document:
    body: bytes
    etag: str  # a quoted strong ETag, derived from the body


# What ?account=, ?region= and ?cluster= narrow a service to; None: not narrowed.
Scope = tuple[str | None, str | None, str | None]
EVERYWHERE: Scope = (None, None, None)


@dataclass(frozen=True, slots=True)
class ServiceDocuments:
    whole: Document
    by_scope: Mapping[Scope, Document]  # every scope some endpoint is in; whole under EVERYWHERE
    # b"host:port" of each serving endpoint, for /v1/resolve, by scope and port name (the main
    # port under "main", each named port under its name).
    serving: Mapping[tuple[Scope, str], tuple[bytes, ...]]
    port_names: frozenset[str]  # every port name any endpoint of the service has, "main" included


@dataclass(frozen=True, slots=True)
class ResolverDocuments:
    # /v1/services carries the data's age, which changes every second: the body is this head,
    # the age, then this tail, and its ETag is weak (same services, same ETag).
    list_head: bytes
    list_tail: bytes
    list_etag: str
    services: Mapping[str, ServiceDocuments]


def render_endpoint(endpoint: Endpoint) -> dict[str, Any]:
    return {
        "host": endpoint.host_ip,
        "port": endpoint.host_port,
        "health": str(endpoint.health),
        "az": endpoint.az,
        "source": str(endpoint.source),
        "cluster": endpoint.cluster,
        "task": endpoint.task_arn,
        "container": endpoint.container,
        "instance_id": endpoint.instance_id,
        "account": endpoint.account,
        "region": endpoint.region,
        "ports": {MAIN_PORT: endpoint.host_port, **dict(endpoint.ports)},
    }


def render_service(name: str, endpoints: Sequence[Endpoint]) -> dict[str, Any]:
    return {"name": name, "endpoints": [render_endpoint(e) for e in endpoints]}


def render_services(services: Mapping[str, Service]) -> list[dict[str, Any]]:
    return [render_service(name, services[name].endpoints) for name in sorted(services)]


def document(value: object) -> Document:
    body = json.dumps(value, separators=(",", ":")).encode()
    return Document(body, f'"{hashlib.blake2b(body, digest_size=12).hexdigest()}"')


RESOLVER: ViewKey[ResolverDocuments] = ViewKey("resolver")


class ResolverRenderer:
    """Every resolver document of a snapshot; a service's documents are reused while it is unchanged."""

    key = RESOLVER

    def __init__(self) -> None:
        self._per_service = PerService(_service_documents)

    def __call__(
        self, services: Mapping[str, Service], generation: int, previous: ResolverDocuments | None
    ) -> ResolverDocuments:
        return render_resolver(services, generation, self._per_service(services))


def render_resolver(
    services: Mapping[str, Service], generation: int, documents: Mapping[str, ServiceDocuments]
) -> ResolverDocuments:
    """Every resolver document of one snapshot, around each service's own (`documents`)."""
    summary = [
        {
            "name": name,
            "endpoints": len(service.endpoints),
            "healthy": sum(e.health is Health.HEALTHY for e in service.endpoints),
        }
        for name, service in sorted(services.items())
    ]
    tail = b',"services":' + json.dumps(summary, separators=(",", ":")).encode() + b"}"
    return ResolverDocuments(
        list_head=b'{"generation":' + str(generation).encode() + b',"age_s":',
        list_tail=tail,
        list_etag=f'W/"{hashlib.blake2b(tail, digest_size=12).hexdigest()}"',
        services=MappingProxyType(dict(documents)),
    )


def _service_documents(service: Service) -> ServiceDocuments:
    whole = document(render_service(service.name, service.endpoints))
    names = frozenset({MAIN_PORT, *(name for e in service.endpoints for name, _ in e.ports)})
    members: dict[Scope, list[Endpoint]] = {}
    for endpoint in service.endpoints:
        for scope in _scopes(endpoint):
            members.setdefault(scope, []).append(endpoint)
    members.setdefault(EVERYWHERE, [])
    by_scope: dict[Scope, Document] = {}
    serving_by: dict[tuple[Scope, str], tuple[bytes, ...]] = {}
    for scope, subset in sorted(members.items(), key=lambda item: item[0] != EVERYWHERE):  # EVERYWHERE first
        # A service in one account, region and cluster (the usual case) shares one document,
        # and one list of addresses per port, across every scope.
        if scope != EVERYWHERE and len(subset) == len(service.endpoints):
            by_scope[scope] = whole
            serving_by.update({(scope, name): serving_by[EVERYWHERE, name] for name in names})
            continue
        by_scope[scope] = whole if scope == EVERYWHERE else document(render_service(service.name, subset))
        for name in names:
            serving_by[scope, name] = tuple(
                e.address_of(name).encode() for e in serving([e for e in subset if e.port(name)])
            )
    return ServiceDocuments(
        whole=whole,
        by_scope=MappingProxyType(by_scope),
        serving=MappingProxyType(serving_by),
        port_names=names,
    )


def _scopes(endpoint: Endpoint) -> list[Scope]:
    """Every narrowing that keeps `endpoint`. A cluster filter trusts only what ECS says: a Cloud
    Map attribute may claim any cluster."""
    return [
        (account, region, cluster)
        for account in {None, endpoint.account or None}
        for region in {None, endpoint.region or None}
        for cluster in {None, endpoint.known_cluster or None}
    ]

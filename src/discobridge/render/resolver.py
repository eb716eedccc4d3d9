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


@dataclass(frozen=True, slots=True)
class ServiceDocuments:
    whole: Document
    by_cluster: Mapping[str, Document]
    # b"host:port" of each serving endpoint, for /v1/resolve, by (cluster or None for all, port
    # name): the main port under "main", each named port under its name.
    serving: Mapping[tuple[str | None, str], tuple[bytes, ...]]
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
    by_cluster = {}
    names = frozenset({MAIN_PORT, *(name for e in service.endpoints for name, _ in e.ports)})
    serving_by: dict[tuple[str | None, str], tuple[bytes, ...]] = {}
    # A cluster filter trusts only what ECS says: a Cloud Map attribute may claim any cluster.
    clusters = sorted({e.known_cluster for e in service.endpoints} - {""})
    for cluster in (None, *clusters):
        subset = [e for e in service.endpoints if cluster is None or e.known_cluster == cluster]
        for name in names:
            serving_by[cluster, name] = tuple(_address(e, name) for e in serving([e for e in subset if e.port(name)]))
    for cluster in clusters:
        subset = [e for e in service.endpoints if e.known_cluster == cluster]
        # A service in one cluster (the usual case) shares its document rather than copy it.
        by_cluster[cluster] = (
            whole if len(subset) == len(service.endpoints) else document(render_service(service.name, subset))
        )
    return ServiceDocuments(
        whole=whole,
        by_cluster=MappingProxyType(by_cluster),
        serving=MappingProxyType(serving_by),
        port_names=names,
    )


def _address(endpoint: Endpoint, port_name: str) -> bytes:
    port = endpoint.port(port_name)
    return (f"[{endpoint.host_ip}]:{port}" if ":" in endpoint.host_ip else f"{endpoint.host_ip}:{port}").encode()

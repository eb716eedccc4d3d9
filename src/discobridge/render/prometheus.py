"""Services -> Prometheus HTTP service discovery (http_sd) target lists, once per snapshot.

The format (prometheus.io/docs/prometheus/latest/http_sd/): a JSON list of target groups
`{"targets": ["host:port"], "labels": {...}}`, `[]` when there are none, the whole list every
time. Labels differ per task (health, task, zone), and a group's labels hold for all its targets,
so each endpoint is a group of its own, ordered by service, cluster and address: the same estate
gives the same bytes. Every endpoint is listed, healthy or not, so Prometheus can show it down.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

from discobridge.model import MAIN_PORT, Endpoint, Service
from discobridge.render import ViewKey
from discobridge.render.memo import PerService

LABEL = "__meta_discobridge_"


@dataclass(frozen=True, slots=True)
class ServiceTargets:
    """One service's list for one port, and where each of its groups lies in it, so a ?cluster=
    list is cut out of the bytes already held rather than rendered again."""

    document: tuple[bytes, str]  # the list, with its ETag
    groups: tuple[tuple[str, int, int], ...]  # (cluster as ECS says it, start, end) of each group


# A document as the buffers it is sent in, in order: the whole list is never joined, its parts
# are the services' own bytes (at 10,000 endpoints a joined copy would be 5 MB more per port).
Parts = tuple[bytes | memoryview, ...]


@dataclass(frozen=True, slots=True)
class TargetLists:
    """By port name ("main" included): the whole list and each service's, with their ETags."""

    whole: Mapping[str, tuple[Parts, str]]
    services: Mapping[str, Mapping[str, ServiceTargets]]  # by port, then service

    def select(self, port: str, service: str | None, cluster: str | None) -> tuple[Parts, str]:
        by_service = self.services.get(port, {})
        if cluster is None:
            if service is None:
                return self.whole.get(port, _EMPTY_PARTS)
            found = by_service.get(service)
            body, etag = found.document if found is not None else _EMPTY
            return (body,), etag
        if service is None:
            chosen: list[ServiceTargets] = list(by_service.values())
        else:
            chosen = [by_service[service]] if service in by_service else []
        body, etag = _listed([t.document[0][start:end] for t in chosen for c, start, end in t.groups if c == cluster])
        return (body,), etag


PROMETHEUS: ViewKey[TargetLists] = ViewKey("prometheus")


class PrometheusRenderer:
    """The http_sd lists of a snapshot; a service's lists are reused while it is unchanged."""

    key = PROMETHEUS

    def __init__(self) -> None:
        self._per_service = PerService(_service_targets)

    def __call__(self, services: Mapping[str, Service], generation: int, previous: TargetLists | None) -> TargetLists:
        rendered = self._per_service(services)
        by_port: dict[str, dict[str, ServiceTargets]] = {}
        for name in sorted(rendered):
            for port, targets in rendered[name].items():
                by_port.setdefault(port, {})[name] = targets
        whole = {port: _joined([t.document[0] for t in found.values()]) for port, found in by_port.items()}
        return TargetLists(
            whole=MappingProxyType(whole),
            services=MappingProxyType({port: MappingProxyType(found) for port, found in by_port.items()}),
        )


def _service_targets(service: Service) -> dict[str, ServiceTargets]:
    """A service's lists by port name, each group in (cluster, address) order."""
    bodies: dict[str, list[tuple[str, bytes]]] = {}
    for endpoint in sorted(service.endpoints, key=lambda e: (e.cluster, e.host_ip, e.host_port)):
        labels = _labels(endpoint)
        for port_name in (MAIN_PORT, *(name for name, _ in endpoint.ports)):
            target = endpoint.address_of(port_name)
            body = json.dumps({"targets": [target], "labels": labels}, separators=(",", ":")).encode()
            bodies.setdefault(port_name, []).append((endpoint.known_cluster, body))
    out: dict[str, ServiceTargets] = {}
    for port_name, found in bodies.items():
        groups, offset = [], 1  # after the "["
        for cluster, body in found:
            groups.append((cluster, offset, offset + len(body)))
            offset += len(body) + 1  # and the "," that follows
        out[port_name] = ServiceTargets(_listed([body for _, body in found]), tuple(groups))
    return out


def _labels(endpoint: Endpoint) -> dict[str, str]:
    labels = {
        "service": endpoint.service,
        "cluster": endpoint.cluster,
        "health": str(endpoint.health),
        "az": endpoint.az,
        "source": str(endpoint.source),
        "task_arn": endpoint.task_arn,
        "container": endpoint.container,
        "instance_id": endpoint.instance_id,
        "account": endpoint.account,
        "region": endpoint.region,
        f"port_{MAIN_PORT}": str(endpoint.host_port),
        # A label name takes no "-": a port "admin-http" is __meta_discobridge_port_admin_http.
        **{f"port_{name.replace('-', '_')}": str(port) for name, port in endpoint.ports},
    }
    return {LABEL + key: value for key, value in labels.items() if value}


def _listed(bodies: list[bytes]) -> tuple[bytes, str]:
    body = b"[" + b",".join(bodies) + b"]"
    return body, f'"{hashlib.blake2b(body, digest_size=12).hexdigest()}"'


def _joined(lists: list[bytes]) -> tuple[Parts, str]:
    """The list of every group in `lists` (each a rendered list), as parts, with the ETag the
    joined bytes would have."""
    parts: list[bytes | memoryview] = [b"["]
    for body in lists:
        if len(body) > 2:  # not "[]"
            parts += [memoryview(body)[1:-1], b","]
    parts[-1:] = [b"]"] if len(parts) > 1 else [b"[", b"]"]
    digest = hashlib.blake2b(digest_size=12)
    for part in parts:
        digest.update(part)
    return tuple(parts), f'"{digest.hexdigest()}"'


_EMPTY = _listed([])
_EMPTY_PARTS = _joined([])

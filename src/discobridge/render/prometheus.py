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
class Group:
    service: str
    cluster: str  # as ECS says it (Endpoint.known_cluster): what ?cluster= selects by
    body: bytes  # one target group, as JSON


@dataclass(frozen=True, slots=True)
class TargetLists:
    """By port name ("main" included): the whole list and each service's, with their ETags,
    joined once per snapshot; a ?cluster= list is picked from its groups when asked (a copy of
    the whole list per cluster would cost more memory than the join costs time)."""

    lists: Mapping[tuple[str, str | None], tuple[bytes, str]]
    groups: Mapping[tuple[str, str | None], tuple[Group, ...]]

    def select(self, port: str, service: str | None, cluster: str | None) -> tuple[bytes, str]:
        if cluster is None:
            return self.lists.get((port, service), _EMPTY)
        return _listed([g.body for g in self.groups.get((port, service), ()) if g.cluster == cluster])


PROMETHEUS: ViewKey[TargetLists] = ViewKey("prometheus")


class PrometheusRenderer:
    """The http_sd lists of a snapshot; a service's groups are reused while it is unchanged."""

    key = PROMETHEUS

    def __init__(self) -> None:
        self._per_service = PerService(_service_groups)

    def __call__(self, services: Mapping[str, Service], generation: int, previous: TargetLists | None) -> TargetLists:
        groups: dict[str, list[Group]] = {}
        rendered = self._per_service(services)
        for name in sorted(rendered):
            for port, port_groups in rendered[name].items():
                groups.setdefault(port, []).extend(port_groups)
        chosen: dict[tuple[str, str | None], list[Group]] = {}
        for port, found in groups.items():
            for group in found:
                chosen.setdefault((port, None), []).append(group)
                chosen.setdefault((port, group.service), []).append(group)
        return TargetLists(
            lists=MappingProxyType({key: _listed([g.body for g in found]) for key, found in chosen.items()}),
            groups=MappingProxyType({key: tuple(found) for key, found in chosen.items()}),
        )


def _service_groups(service: Service) -> dict[str, list[Group]]:
    """A service's groups by port name, in (cluster, address) order."""
    by_port: dict[str, list[Group]] = {}
    for endpoint in sorted(service.endpoints, key=lambda e: (e.cluster, e.host_ip, e.host_port)):
        labels = _labels(endpoint)
        for port_name in (MAIN_PORT, *(name for name, _ in endpoint.ports)):
            target = endpoint.address_of(port_name)
            body = json.dumps({"targets": [target], "labels": labels}, separators=(",", ":")).encode()
            by_port.setdefault(port_name, []).append(Group(service.name, endpoint.known_cluster, body))
    return by_port


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


_EMPTY = _listed([])

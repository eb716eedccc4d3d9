"""The JSON shape of services and endpoints, shared by the HTTP resolver and `discobridge snapshot`."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from discobridge.model import Endpoint, Service


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
    }


def render_service(service: Service) -> dict[str, Any]:
    return {"name": service.name, "endpoints": [render_endpoint(e) for e in service.endpoints]}


def render_services(services: Mapping[str, Service]) -> list[dict[str, Any]]:
    return [render_service(services[name]) for name in sorted(services)]

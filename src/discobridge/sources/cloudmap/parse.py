"""Pure mapping of one Cloud Map instance (DiscoverInstances) to an endpoint."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from discobridge.model import Endpoint, Health, normalize_service_name

SOURCE = "cloudmap"


def parse_instance(service: str, instance: Mapping[str, Any]) -> Endpoint | str:
    """One Cloud Map instance as an endpoint; a string is the reason it had to be skipped."""
    attributes = instance.get("Attributes") or {}
    ip = attributes.get("AWS_INSTANCE_IPV4", "")
    if not ip:
        return "no_ipv4"
    port_text = attributes.get("AWS_INSTANCE_PORT", "")
    if not port_text:
        return "no_port"
    if not port_text.isdigit() or not 0 < int(port_text) < 65536:
        return "bad_port"
    # HEALTHY and UNKNOWN (no health check configured) both serve, as Route 53 treats them.
    health = Health.UNHEALTHY if instance.get("HealthStatus") == "UNHEALTHY" else Health.HEALTHY
    return Endpoint(
        service=normalize_service_name(service),
        host_ip=ip,
        host_port=int(port_text),
        health=health,
        az=attributes.get("AVAILABILITY_ZONE", ""),
        source=SOURCE,
        cluster=attributes.get("ECS_CLUSTER_NAME", ""),
        instance_id=attributes.get("EC2_INSTANCE_ID") or attributes.get("AWS_EC2_INSTANCE_ID", ""),
    )

"""Pure mapping of one Cloud Map instance (DiscoverInstances) to an endpoint."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from discobridge.model import Endpoint, Health, make_endpoint, normalize_service_name

SOURCE = "cloudmap"


def parse_instance(service: str, instance: Mapping[str, Any], *, account: str = "", region: str = "") -> Endpoint | str:
    """One Cloud Map instance as an endpoint; a string is the reason it had to be skipped.

    Anyone allowed to register an instance writes these attributes, so each is checked: the
    address must be an IP address exactly, the port ASCII digits in range.
    """
    attributes = instance.get("Attributes")
    if not isinstance(attributes, Mapping):
        return "no_attributes"
    ip = _attribute(attributes, "AWS_INSTANCE_IPV4") or _attribute(attributes, "AWS_INSTANCE_IPV6")
    if not ip:
        return "no_address"
    port_text = _attribute(attributes, "AWS_INSTANCE_PORT")
    if not port_text:
        return "no_port"
    if not (port_text.isascii() and port_text.isdigit()) or len(port_text) > 5:
        return "bad_port"
    # HEALTHY and UNKNOWN (no health check configured) both serve, as Route 53 treats them.
    health = Health.UNHEALTHY if instance.get("HealthStatus") == "UNHEALTHY" else Health.HEALTHY
    return make_endpoint(
        service=normalize_service_name(service),
        host_ip=ip,
        host_port=int(port_text),
        health=health,
        az=_attribute(attributes, "AVAILABILITY_ZONE"),
        source=SOURCE,
        # Shown, but never a DNS name: who can register an instance can write any cluster here.
        cluster=_attribute(attributes, "ECS_CLUSTER_NAME"),
        instance_id=_attribute(attributes, "EC2_INSTANCE_ID") or _attribute(attributes, "AWS_EC2_INSTANCE_ID"),
        account=account,
        region=region,
    )


def _attribute(attributes: Mapping[str, Any], name: str) -> str:
    value = attributes.get(name)
    return value if isinstance(value, str) else ""

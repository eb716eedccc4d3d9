"""parse_instance: Cloud Map instance attributes and health to endpoints."""

from __future__ import annotations

import pytest

from discobridge.model import Endpoint, Health
from discobridge.sources.cloudmap.parse import parse_instance

BASE = {"AWS_INSTANCE_IPV4": "10.0.9.1", "AWS_INSTANCE_PORT": "32768", "AVAILABILITY_ZONE": "us-east-1b"}


@pytest.mark.parametrize(
    ("attributes", "health", "expected"),
    [
        (BASE, "HEALTHY", ("10.0.9.1:32768", Health.HEALTHY)),
        (BASE, "UNKNOWN", ("10.0.9.1:32768", Health.HEALTHY)),
        (BASE, None, ("10.0.9.1:32768", Health.HEALTHY)),
        (BASE, "UNHEALTHY", ("10.0.9.1:32768", Health.UNHEALTHY)),
        ({**BASE, "AWS_INSTANCE_IPV4": ""}, "HEALTHY", "no_ipv4"),
        ({k: v for k, v in BASE.items() if k != "AWS_INSTANCE_PORT"}, "HEALTHY", "no_port"),
        ({**BASE, "AWS_INSTANCE_PORT": "http"}, "HEALTHY", "bad_port"),
        ({**BASE, "AWS_INSTANCE_PORT": "70000"}, "HEALTHY", "bad_port"),
    ],
    ids=["healthy", "unknown", "absent", "unhealthy", "no-ipv4", "no-port", "port-text", "port-range"],
)
def test_parse_instance(attributes: dict[str, str], health: str | None, expected: object) -> None:
    instance = {"InstanceId": "i-1", "Attributes": attributes, **({"HealthStatus": health} if health else {})}
    parsed = parse_instance("Legacy_Billing", instance)
    if isinstance(parsed, Endpoint):
        assert (parsed.address, parsed.health) == expected
        assert parsed.service == "legacy-billing" and parsed.source == "cloudmap"
        assert parsed.az == "us-east-1b"
    else:
        assert parsed == expected


def test_ecs_attributes_fill_cluster_and_instance() -> None:
    attributes = {**BASE, "ECS_CLUSTER_NAME": "prod", "EC2_INSTANCE_ID": "i-0abc"}
    parsed = parse_instance("orders", {"Attributes": attributes, "HealthStatus": "HEALTHY"})
    assert isinstance(parsed, Endpoint) and (parsed.cluster, parsed.instance_id) == ("prod", "i-0abc")

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
        ({**BASE, "AWS_INSTANCE_IPV4": ""}, "HEALTHY", "no_address"),
        ({k: v for k, v in BASE.items() if k != "AWS_INSTANCE_PORT"}, "HEALTHY", "no_port"),
        ({**BASE, "AWS_INSTANCE_PORT": "http"}, "HEALTHY", "bad_port"),
        ({**BASE, "AWS_INSTANCE_PORT": "70000"}, "HEALTHY", "bad_port"),
        ({**BASE, "AWS_INSTANCE_PORT": "٨٠"}, "HEALTHY", "bad_port"),  # Arabic-Indic digits: isdigit() says yes
        ({**BASE, "AWS_INSTANCE_PORT": "0080"}, "HEALTHY", ("10.0.9.1:80", Health.HEALTHY)),
        ({**BASE, "AWS_INSTANCE_IPV4": "1.2.3.4<script>"}, "HEALTHY", "bad_ip"),
        ({**BASE, "AWS_INSTANCE_IPV4": "010.000.000.010"}, "HEALTHY", "bad_ip"),  # inet_aton: 8.0.0.8
        ({**BASE, "AWS_INSTANCE_IPV4": "10.0.0.6 "}, "HEALTHY", "bad_ip"),
        ({**BASE, "AWS_INSTANCE_IPV4": "1::2::3"}, "HEALTHY", "bad_ip"),
        ({"AWS_INSTANCE_IPV6": "fe80::1%eth0", "AWS_INSTANCE_PORT": "443"}, "HEALTHY", "bad_ip"),  # no record carries a scope
        (
            {"AWS_INSTANCE_IPV6": "FD00:0:0::0A", "AWS_INSTANCE_PORT": "443", "AVAILABILITY_ZONE": "us-east-1b"},
            "HEALTHY",
            ("[fd00::a]:443", Health.HEALTHY),  # canonical form
        ),
    ],
    ids=[
        "healthy", "unknown", "absent", "unhealthy", "no-address", "no-port", "port-text", "port-range",
        "port-unicode-digits", "port-leading-zeros", "ip-markup", "ip-leading-zeros", "ip-space", "ip-two-gaps",
        "ip-scoped", "ipv6-canonical",
    ],
)  # fmt: skip
def test_parse_instance(attributes: dict[str, str], health: str | None, expected: object) -> None:
    instance = {"InstanceId": "i-1", "Attributes": attributes, **({"HealthStatus": health} if health else {})}
    parsed = parse_instance("Legacy_Billing", instance)
    if isinstance(parsed, Endpoint):
        assert (parsed.address, parsed.health) == expected
        assert parsed.service == "legacy-billing" and parsed.source == "cloudmap"
        assert parsed.az == "us-east-1b"
    else:
        assert parsed == expected


def test_text_xml_cannot_carry_is_replaced_in_every_field() -> None:
    attributes = {**BASE, "AVAILABILITY_ZONE": "us-east-1\x0ba", "ECS_CLUSTER_NAME": "prod\ud800"}
    parsed = parse_instance("orders", {"Attributes": attributes})
    assert isinstance(parsed, Endpoint)
    assert (parsed.az, parsed.cluster) == ("us-east-1\ufffda", "prod\ufffd")


def test_attributes_of_the_wrong_type_are_skipped_not_fatal() -> None:
    assert parse_instance("orders", {"Attributes": "nonsense"}) == "no_attributes"
    assert (
        parse_instance("orders", {"Attributes": {"AWS_INSTANCE_IPV4": 10, "AWS_INSTANCE_PORT": "80"}}) == "no_address"
    )


def test_ecs_attributes_fill_cluster_and_instance() -> None:
    attributes = {**BASE, "ECS_CLUSTER_NAME": "prod", "EC2_INSTANCE_ID": "i-0abc"}
    parsed = parse_instance("orders", {"Attributes": attributes, "HealthStatus": "HEALTHY"})
    assert isinstance(parsed, Endpoint) and (parsed.cluster, parsed.instance_id) == ("prod", "i-0abc")

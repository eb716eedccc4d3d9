"""parse_task: the public endpoint rules, on AWS-shaped DescribeTasks JSON per network mode."""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from typing import Any

import pytest

from discobridge.model import Endpoint, Health
from discobridge.sources.ecs.parse import HostInfo, definition_facts, task_facts
from discobridge.sources.ecs.parse import parse_task as parse_facts
from tests.conftest import ROOT

HOST = HostInfo(instance_id="i-0abc", private_ip="10.0.1.17", az="us-east-1a")


def parse_task(
    task: dict[str, Any], definition: dict[str, Any], host: HostInfo | None, draining: bool
) -> Endpoint | str | None:
    """DescribeTasks and DescribeTaskDefinition JSON, reduced to facts as the source keeps them, then mapped."""
    facts = task_facts(task)
    assert facts is not None
    return parse_facts(facts, definition_facts(definition), host, draining)


def recorded(mode: str) -> tuple[dict[str, Any], dict[str, Any]]:
    data = json.loads((ROOT / "tests" / "data" / f"ecs_{mode}.json").read_text())
    return data["task"], data["taskDefinition"]


def test_bridge_task_publishes_host_ip_and_first_tcp_host_port() -> None:
    task, definition = recorded("bridge")
    assert parse_task(task, definition, HOST, draining=False) == Endpoint(
        service="orders-api",
        host_ip="10.0.1.17",
        host_port=49161,
        health=Health.HEALTHY,
        az="us-east-1b",  # the task's own AZ wins over the host's
        source="ecs",
        cluster="prod",
        task_arn=task["taskArn"],
        container="web",
        container_instance=task["containerInstanceArn"],
        instance_id="i-0abc",
    )


def test_host_mode_task_uses_host_port_equal_to_container_port_and_family_name() -> None:
    task, definition = recorded("host")
    endpoint = parse_task(task, definition, HOST, draining=False)
    assert isinstance(endpoint, Endpoint)
    assert (endpoint.service, endpoint.host_ip, endpoint.host_port) == ("node-exporter", "10.0.1.17", 9100)


def test_awsvpc_task_uses_eni_ip_and_container_port_without_a_host() -> None:
    task, definition = recorded("awsvpc")
    endpoint = parse_task(task, definition, None, draining=False)
    assert isinstance(endpoint, Endpoint)
    assert (endpoint.host_ip, endpoint.host_port, endpoint.instance_id) == ("10.0.2.87", 8443, "")
    assert endpoint.health is Health.UNHEALTHY
    assert endpoint.az == "us-east-1b"


Change = Callable[[dict[str, Any], dict[str, Any]], None]


def _set(path: str, value: Any) -> Change:
    def change(task: dict[str, Any], definition: dict[str, Any]) -> None:
        target, key = (task, path) if not path.startswith("def.") else (definition, path[4:])
        target[key] = value

    return change


def _labels(**labels: str) -> Change:
    def change(task: dict[str, Any], definition: dict[str, Any]) -> None:
        definition["containerDefinitions"][0]["dockerLabels"] = {k.replace("_", "."): v for k, v in labels.items()}

    return change


def _sidecar_first(labels: dict[str, str]) -> Change:
    """Put a labelled sidecar with its own TCP binding before the web container."""

    def change(task: dict[str, Any], definition: dict[str, Any]) -> None:
        definition["containerDefinitions"].insert(
            0, {"name": "envoy", "portMappings": [{"containerPort": 9901}], "dockerLabels": labels}
        )
        task["containers"].insert(
            0,
            {
                "name": "envoy",
                "lastStatus": "RUNNING",
                "networkBindings": [{"containerPort": 9901, "hostPort": 40001, "protocol": "tcp"}],
            },
        )

    return change


CASES: list[tuple[str, list[Change], object]] = [
    ("pending-task", [_set("lastStatus", "PENDING")], None),
    ("stopping-task", [_set("desiredStatus", "STOPPED")], None),
    ("unhealthy", [_set("healthStatus", "UNHEALTHY")], ("orders-api", 49161, Health.UNHEALTHY)),
    ("unknown-health-is-healthy", [_set("healthStatus", "UNKNOWN")], ("orders-api", 49161, Health.HEALTHY)),
    ("name-label", [_labels(discobridge_name="Orders.V2")], ("orders-v2", 49161, Health.HEALTHY)),
    ("standalone-family-group", [_set("group", "family:Nightly_Report")], ("nightly-report", 49161, Health.HEALTHY)),
    ("no-group-uses-family", [_set("group", "")], ("orders", 49161, Health.HEALTHY)),
    ("disabled-container", [_labels(discobridge_enable="false")], None),
    ("disabled-case-insensitive", [_labels(discobridge_enable="FALSE")], None),
    ("port-label-unbound", [_labels(discobridge_port="9999")], "port_label_not_bound"),
    ("port-label-garbage", [_labels(discobridge_port="http")], "bad_port_label"),
    ("port-label-underscores", [_labels(discobridge_port="8_0_8_0")], "bad_port_label"),  # int() takes it
    ("port-label-unicode-digits", [_labels(discobridge_port="٨٠٨٠")], "bad_port_label"),
    ("sidecar-first-wins-without-labels", [_sidecar_first({})], ("orders-api", 40001, Health.HEALTHY)),
    (
        "port-label-picks-later-container",
        [
            _sidecar_first({}),
            lambda t, d: d["containerDefinitions"][1].update(dockerLabels={"discobridge.port": "8080"}),
        ],
        ("orders-api", 49161, Health.HEALTHY),
    ),
    (
        "disabled-sidecar-is-skipped",
        [_sidecar_first({"discobridge.enable": "false"})],
        ("orders-api", 49161, Health.HEALTHY),
    ),
    ("no-bindings-yet", [lambda t, d: t["containers"][0].update(networkBindings=[])], "no_port"),
    (
        "udp-only",
        [lambda t, d: t["containers"][0].update(networkBindings=[t["containers"][0]["networkBindings"][0]])],
        "no_port",
    ),
]


@pytest.mark.parametrize(("changes", "expected"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bridge_rules(changes: list[Change], expected: object) -> None:
    task, definition = copy.deepcopy(recorded("bridge"))
    for change in changes:
        change(task, definition)
    parsed = parse_task(task, definition, HOST, draining=False)
    if isinstance(parsed, Endpoint):
        assert (parsed.service, parsed.host_port, parsed.health) == expected
    else:
        assert parsed == expected


def test_draining_host_wins_over_task_health() -> None:
    task, definition = copy.deepcopy(recorded("bridge"))
    task["healthStatus"] = "UNHEALTHY"
    endpoint = parse_task(task, definition, HOST, draining=True)
    assert isinstance(endpoint, Endpoint) and endpoint.health is Health.DRAINING


def test_bridge_task_without_known_host_is_skipped_with_reason() -> None:
    task, definition = recorded("bridge")
    assert parse_task(task, definition, None, draining=False) == "no_host_ip"


def test_an_address_that_is_not_exactly_an_ip_is_skipped() -> None:
    task, definition = copy.deepcopy(recorded("awsvpc"))
    task["attachments"][0]["details"] = [{"name": "privateIPv4Address", "value": "10.0.2.087"}]
    task["containers"][0]["networkInterfaces"] = []
    assert parse_task(task, definition, None, draining=False) == "bad_ip"
    bridge, bridge_definition = recorded("bridge")
    odd_host = HostInfo(instance_id="i-0abc", private_ip="10.0.1.17 ", az="us-east-1a")
    assert parse_task(bridge, bridge_definition, odd_host, draining=False) == "bad_ip"


def test_awsvpc_task_without_eni_is_skipped_with_reason() -> None:
    task, definition = copy.deepcopy(recorded("awsvpc"))
    task["attachments"] = []
    task["containers"][0]["networkInterfaces"] = []
    assert parse_task(task, definition, None, draining=False) == "no_task_ip"

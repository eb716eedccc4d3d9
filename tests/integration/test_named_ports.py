"""Every named port of a task, through moto over HTTP and the daemon's real sockets: a task
definition with a port named in portMappings, one named by a `discobridge.port.<name>` label and
one unnamed, in bridge, host and awsvpc mode; answered in DNS, /v1, Eureka and Prometheus' http_sd."""

from __future__ import annotations

import json
from typing import Any

import aiohttp
import dns.asyncquery
import dns.message
import dns.rcode
import pytest
from aiobotocore.session import AioSession

from discobridge.app import Daemon
from discobridge.fakeaws.estate import Container, Estate
from discobridge.fakeaws.server import FakeAws
from tests.conftest import daemon_get, running
from tests.integration.test_eureka_wire import _instance_checks

APP = Container(
    "app",
    ports=(8080, 9090, 9102, 7000),
    port_names={9090: "grpc"},  # 7000 has no name: not published as a named port
    labels={"discobridge.port.metrics": "9102"},
)
MODES = ["bridge", "host", "awsvpc"]


def seed(estate: Estate, mode: str) -> str:
    """One task of service `api` in `mode`; returns its cluster."""
    estate.cluster("prod")
    definition = estate.task_definition("api", APP, network_mode=mode)
    if mode == "awsvpc":
        estate.fargate_service("prod", "api", definition, count=1)
    else:
        estate.service("prod", "api", definition, estate.hosts("prod", 1))
    return "prod"


def expected_ports(estate: Estate, mode: str) -> dict[str, int]:
    """The ports a client connects to, from ECS itself: networkBindings, or the container ports."""
    arn = estate.ecs.list_tasks(cluster="prod")["taskArns"][0]
    task = estate.ecs.describe_tasks(cluster="prod", tasks=[arn])["tasks"][0]
    if mode == "awsvpc":
        bound = {port: port for port in APP.ports}
    else:
        bound = {b["containerPort"]: b["hostPort"] for b in task["containers"][0]["networkBindings"]}
    return {"main": bound[8080], "grpc": bound[9090], "metrics": bound[9102]}


async def ask(daemon: Daemon, name: str, rdtype: str = "SRV") -> dns.message.Message:
    query = dns.message.make_query(f"{name}.{daemon.config.dns.zone}", rdtype)
    return await dns.asyncquery.udp(query, "127.0.0.1", port=daemon.dns.addresses[0].port, timeout=2)


def srv_ports(reply: dns.message.Message) -> list[int]:
    return sorted(int(r.port) for rrset in reply.answer for r in rrset)


@pytest.mark.parametrize("mode", MODES)
async def test_named_ports_in_every_frontend(
    fake_aws: FakeAws, estate: Estate, aio_session: AioSession, mode: str
) -> None:
    seed(estate, mode)
    ports = expected_ports(estate, mode)
    async with running(fake_aws.url, aio_session) as daemon:
        assert await daemon.store.wait_for(0, timeout=10) is not None
        (endpoint,) = daemon.store.current.services["api"].endpoints  # type: ignore[union-attr]
        assert endpoint.ports == (("grpc", ports["grpc"]), ("metrics", ports["metrics"]))

        # DNS: RFC 2782 names per port, service-wide and per cluster, with glue; main unchanged.
        grpc = await ask(daemon, "_grpc._tcp.api")
        assert srv_ports(grpc) == [ports["grpc"]] and grpc.additional
        assert srv_ports(await ask(daemon, "_metrics._tcp.api.prod")) == [ports["metrics"]]
        assert srv_ports(await ask(daemon, "_api._tcp")) == [ports["main"]]
        assert srv_ports(await ask(daemon, "api")) == [ports["main"]]
        assert (await ask(daemon, "_admin._tcp.api")).rcode() == dns.rcode.NXDOMAIN
        assert (await ask(daemon, "_grpc._tcp.api", "A")).rcode() == dns.rcode.NOERROR  # NODATA

        # HTTP: every port by name, and /v1/resolve by port.
        status, body = await daemon_get(daemon, "/v1/services/api")
        assert status == 200 and json.loads(body)["endpoints"][0]["ports"] == ports
        status, body = await daemon_get(daemon, "/v1/resolve/api?port=metrics")
        assert status == 200 and body.decode() == f"{endpoint.host_ip}:{ports['metrics']}"
        status, body = await daemon_get(daemon, "/v1/resolve/api?port=admin")
        assert status == 404 and "no port named 'admin'" in json.loads(body)["error"]

        # Eureka: `port` stays the main one; the named ports are metadata a Spring decoder takes.
        status, body = await daemon_get(daemon, "/eureka/apps/API", Accept="application/json")
        (instance,) = json.loads(body)["application"]["instance"]
        _instance_checks(instance, "API")
        assert instance["port"]["$"] == ports["main"]
        metadata = instance["metadata"]
        assert metadata["port.grpc"] == str(ports["grpc"]) and metadata["port.metrics"] == str(ports["metrics"])
        assert metadata["management.port"] == str(ports["metrics"])

        # Prometheus http_sd: the metrics port by default of ?port=, with every label.
        status, body = await daemon_get(daemon, "/v1/prometheus/targets?port=metrics")
        (group,) = json.loads(body)
        assert group["targets"] == [f"{endpoint.host_ip}:{ports['metrics']}"]
        labels: dict[str, Any] = group["labels"]
        assert labels["__meta_discobridge_service"] == "api" and labels["__meta_discobridge_cluster"] == "prod"
        assert labels["__meta_discobridge_port_grpc"] == str(ports["grpc"])
        assert labels["__meta_discobridge_health"] == "healthy" and labels["__meta_discobridge_task_arn"]


async def test_prometheus_targets_list_every_endpoint_narrowed_as_asked(
    fake_aws: FakeAws, estate: Estate, aio_session: AioSession
) -> None:
    estate.web_service("prod", "orders", hosts=2)
    estate.web_service("staging", "orders")
    async with running(fake_aws.url, aio_session) as daemon:
        assert await daemon.store.wait_for(0, timeout=10) is not None
        status, body = await daemon_get(daemon, "/v1/prometheus/targets")
        groups = json.loads(body)
        assert status == 200 and len(groups) == 3
        assert [g["labels"]["__meta_discobridge_cluster"] for g in groups] == ["prod", "prod", "staging"]
        assert len(json.loads((await daemon_get(daemon, "/v1/prometheus/targets?cluster=staging"))[1])) == 1
        assert json.loads((await daemon_get(daemon, "/v1/prometheus/targets?port=metrics"))[1]) == []
        assert json.loads((await daemon_get(daemon, "/v1/prometheus/targets?service=nope"))[1]) == []
        assert (await daemon_get(daemon, "/v1/prometheus/targets?sevice=orders"))[0] == 400
        etag = await etag_of(daemon, "/v1/prometheus/targets")
        assert (await daemon_get(daemon, "/v1/prometheus/targets", **{"If-None-Match": etag}))[0] == 304


async def etag_of(daemon: Daemon, path: str) -> str:
    assert daemon.http.address is not None
    async with aiohttp.ClientSession() as client, client.get(f"http://127.0.0.1:{daemon.http.address.port}{path}") as r:
        return r.headers["ETag"]

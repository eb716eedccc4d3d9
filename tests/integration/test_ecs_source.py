"""The real ECS source against moto's server over HTTP, through aiobotocore and our AWS gate."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from aiobotocore.session import AioSession

from discobridge.app import Daemon
from discobridge.fakeaws.estate import Container, Estate
from discobridge.fakeaws.server import FakeAws
from discobridge.model import Endpoint, Health
from tests.conftest import make_config


@pytest.fixture
async def daemon(fake_aws: FakeAws, aio_session: AioSession) -> AsyncIterator[Daemon]:
    config = make_config(fake_aws.url)
    async with Daemon(config, session=aio_session, aws_options={"max_attempts": 1}) as running:
        yield running


def bindings(estate: Estate, cluster: str, task_arn: str) -> dict[str, list[dict[str, object]]]:
    """What ECS itself reports for a task's containers: the truth our endpoints must match."""
    task = estate.ecs.describe_tasks(cluster=cluster, tasks=[task_arn])["tasks"][0]
    return {c["name"]: c.get("networkBindings", []) for c in task["containers"]}


def host_ip(estate: Estate, cluster: str, container_instance: str) -> str:
    ci = estate.ecs.describe_container_instances(cluster=cluster, containerInstances=[container_instance])
    instance_id = ci["containerInstances"][0]["ec2InstanceId"]
    reservations = estate.ec2.describe_instances(InstanceIds=[instance_id])["Reservations"]
    ip: str = reservations[0]["Instances"][0]["PrivateIpAddress"]
    return ip


async def endpoints_of(daemon: Daemon, service: str) -> tuple[Endpoint, ...]:
    assert await daemon.refresh_all() is True
    snapshot = daemon.store.current
    assert snapshot is not None
    return snapshot.services[service].endpoints


async def test_bridge_service_publishes_host_ips_and_ephemeral_host_ports(estate: Estate, daemon: Daemon) -> None:
    estate.cluster("prod")
    hosts = estate.hosts("prod", 2, az="a") + estate.hosts("prod", 1, az="b")
    definition = estate.task_definition("orders", Container("web", ports=(8080,)))
    tasks = estate.service("prod", "orders", definition, hosts)

    found = await endpoints_of(daemon, "orders")
    expected = set()
    for task_arn, host in zip(tasks, hosts, strict=True):
        (binding,) = bindings(estate, "prod", task_arn)["web"]
        assert binding["hostPort"] != 8080 and 32768 <= binding["hostPort"] < 61000  # type: ignore[operator]
        expected.add((host_ip(estate, "prod", host), binding["hostPort"], task_arn))
    assert {(e.host_ip, e.host_port, e.task_arn) for e in found} == expected
    assert {e.az for e in found} == {"us-east-1a", "us-east-1b"}
    assert all(e.cluster == "prod" and e.container == "web" and e.instance_id.startswith("i-") for e in found)


async def test_host_and_awsvpc_modes(estate: Estate, daemon: Daemon) -> None:
    estate.cluster("prod")
    hosts = estate.hosts("prod", 2)
    exporter = estate.task_definition("node-exporter", Container("exporter", ports=(9100,)), network_mode="host")
    estate.service("prod", "node-exporter", exporter, hosts)
    payments = estate.task_definition("payments", Container("api", ports=(8443,)), network_mode="awsvpc")
    payment_tasks = estate.fargate_service("prod", "payments", payments, count=2)

    host_endpoints = await endpoints_of(daemon, "node-exporter")
    assert sorted((e.host_ip, e.host_port) for e in host_endpoints) == sorted(
        (host_ip(estate, "prod", h), 9100) for h in hosts
    )
    described = estate.ecs.describe_tasks(cluster="prod", tasks=payment_tasks)["tasks"]
    enis = {
        d["value"]
        for t in described
        for a in t["attachments"]
        for d in a["details"]
        if d["name"] == "privateIPv4Address"
    }
    awsvpc = daemon.store.current.services["payments"].endpoints  # type: ignore[union-attr]
    assert {(e.host_ip, e.host_port) for e in awsvpc} == {(ip, 8443) for ip in enis}
    assert {e.az for e in awsvpc} == {"us-east-1a", "us-east-1b"}
    assert all(e.instance_id == "" and e.container_instance == "" for e in awsvpc)


async def test_multi_container_labels_and_standalone_task(estate: Estate, daemon: Daemon) -> None:
    estate.cluster("prod")
    hosts = estate.hosts("prod", 1)
    checkout = estate.task_definition(
        "checkout-v2",
        Container("log-router", ports=(24224,), labels={"discobridge.enable": "false"}),
        Container("envoy", ports=(9901,)),
        Container("app", ports=(8080, 8081), labels={"discobridge.port": "8081", "discobridge.name": "Checkout"}),
    )
    (checkout_task,) = estate.service("prod", "checkout-v2", checkout, hosts)
    report = estate.task_definition("Report_Builder", Container("worker", ports=(8000,)))
    (report_task,) = estate.place("prod", report, hosts)
    hidden = estate.task_definition("hidden", Container("only", ports=(80,), labels={"discobridge.enable": "false"}))
    estate.place("prod", hidden, hosts)

    (endpoint,) = await endpoints_of(daemon, "checkout")
    app_ports = {b["containerPort"]: b["hostPort"] for b in bindings(estate, "prod", checkout_task)["app"]}
    assert (endpoint.container, endpoint.host_port) == ("app", app_ports[8081])

    services = daemon.store.current.services  # type: ignore[union-attr]
    assert "checkout-v2" not in services and "hidden" not in services
    (standalone,) = services["report-builder"].endpoints
    assert standalone.task_arn == report_task
    assert standalone.host_port == bindings(estate, "prod", report_task)["worker"][0]["hostPort"]


async def test_health_draining_pending_and_stopped_tasks(estate: Estate, daemon: Daemon) -> None:
    estate.cluster("prod")
    hosts = estate.hosts("prod", 3)
    definition = estate.task_definition("orders", Container("web", ports=(8080,), health_check=True))
    healthy, sick, on_draining_host = estate.service("prod", "orders", definition, hosts)
    estate.set_health("prod", sick, "UNHEALTHY")
    estate.set_health("prod", healthy, "HEALTHY")
    estate.drain("prod", hosts[2])
    estate.pending("prod", definition, hosts[0], group="service:orders")
    stopped = estate.place("prod", definition, hosts[:1], group="service:orders")[0]
    estate.stop("prod", stopped)

    found = {e.task_arn: e.health for e in await endpoints_of(daemon, "orders")}
    assert found == {healthy: Health.HEALTHY, sick: Health.UNHEALTHY, on_draining_host: Health.DRAINING}


async def test_more_than_100_tasks_are_paged_and_described_in_batches(
    estate: Estate, daemon: Daemon, fake_aws: FakeAws
) -> None:
    estate.cluster("big")
    hosts = estate.hosts("big", 5)
    definition = estate.task_definition("worker", Container("app", ports=(8080,)))
    estate.service("big", "worker", definition, hosts * 50)  # 250 tasks, 50 per host
    fake_aws.faults.calls.clear()

    found = await endpoints_of(daemon, "worker")
    assert len(found) == 250
    assert len({(e.host_ip, e.host_port) for e in found}) == 250
    calls = fake_aws.faults.calls
    assert calls["ListTasks"] == 3  # pages of 100: 100 + 100 + 50
    assert calls["DescribeTasks"] == 3  # batches of at most 100 (the fake rejects more)
    assert calls["DescribeContainerInstances"] == 1
    assert calls["DescribeInstances"] == 1
    assert calls["DescribeTaskDefinition"] == 1

    calls.clear()
    await endpoints_of(daemon, "worker")
    # Hosts and task definitions never change, and tasks without a container health check never
    # change health: the second poll describes none of them again.
    assert set(calls) == {"ListClusters", "ListTasks", "ListContainerInstances"}


async def test_named_clusters_are_read_without_listing_clusters(
    estate: Estate, fake_aws: FakeAws, aio_session: AioSession
) -> None:
    for name in ("prod", "other"):
        estate.cluster(name)
        definition = estate.task_definition(f"svc-{name}", Container("web", ports=(8080,)))
        estate.service(name, f"svc-{name}", definition, estate.hosts(name, 1))
    fake_aws.faults.calls.clear()
    config = make_config(fake_aws.url, ecs={"clusters": ["prod"]})
    async with Daemon(config, session=aio_session, aws_options={"max_attempts": 1}) as daemon:
        assert await daemon.refresh_all()
        assert list(daemon.store.current.services) == ["svc-prod"]  # type: ignore[union-attr]
    assert "ListClusters" not in fake_aws.faults.calls


@pytest.mark.parametrize("operation", ["ListTasks", "DescribeTasks", "DescribeInstances", "ListClusters"])
async def test_failing_call_after_good_poll_keeps_last_good_snapshot(
    estate: Estate, daemon: Daemon, fake_aws: FakeAws, operation: str
) -> None:
    estate.cluster("prod")
    hosts = estate.hosts("prod", 1)
    definition = estate.task_definition("orders", Container("web", ports=(8080,)))
    estate.service("prod", "orders", definition, hosts)
    good = await endpoints_of(daemon, "orders")
    snapshot = daemon.store.current

    # A new host and task appear, but the call that would reveal them fails.
    more = estate.hosts("prod", 1)
    estate.place("prod", definition, more, group="service:orders")
    fake_aws.faults.fail(operation, code="ServerException", status=500)

    assert await daemon.refresh_all() is False
    assert daemon.store.current is snapshot
    assert daemon.store.current.services["orders"].endpoints == good  # type: ignore[union-attr]
    errors = [s.attempts.last_error for s in daemon.store.partitions.values()]
    errors += [a.last_error for a in daemon.store.listings.values()]
    error = next(e for e in errors if e)
    assert operation in error and "ServerException" in error

    fake_aws.faults.clear()
    assert len(await endpoints_of(daemon, "orders")) == 2

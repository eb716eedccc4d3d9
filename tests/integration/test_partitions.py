"""Every cluster its own unit of failure, through moto over HTTP and the daemon's real sockets:
nothing partial at start, a missing or failing cluster never takes the others down, deleted
clusters leave, and a restart answers at once with data of its true age."""

from __future__ import annotations

import json
import socket
from pathlib import Path
from typing import Any

import dns.asyncquery
import dns.message
import dns.rcode
import pytest
from aiobotocore.session import AioSession
from structlog.testing import capture_logs

from discobridge.app import Daemon
from discobridge.fakeaws.estate import Container, Estate
from discobridge.fakeaws.server import FakeAws
from discobridge.snapshot_file import decode, read_file
from tests.conftest import daemon_get, running
from tests.helpers import LOCAL_AWS, FakeClock, partition

CORP = partition("corp.local", source="cloudmap")
BATCH = partition("batch")
STAGING = partition("staging")


async def rcode(daemon: Daemon, name: str, rdtype: str = "A") -> int:
    query = dns.message.make_query(f"{name}.{daemon.config.dns.zone}", rdtype)
    reply = await dns.asyncquery.udp(query, "127.0.0.1", port=daemon.dns.addresses[0].port, timeout=2)
    return int(reply.rcode())


async def services(daemon: Daemon) -> list[str]:
    status, body = await daemon_get(daemon, "/v1/services")
    assert status == 200, body
    return [s["name"] for s in json.loads(body)["services"]]


async def test_a_slow_ecs_cluster_holds_back_the_first_snapshot_while_cloud_map_is_in(
    fake_aws: FakeAws, estate: Estate, aio_session: AioSession
) -> None:
    estate.web_service("prod", "orders")
    namespace = estate.namespace("corp.local")
    estate.cloudmap_instance(namespace, "billing", "b-1", {"AWS_INSTANCE_IPV4": "10.0.9.1", "AWS_INSTANCE_PORT": "80"})
    fake_aws.faults.delay("ListTasks", 1.5, times=1)  # ECS's first poll is slow; Cloud Map's is not
    cloudmap = {"namespaces": ["corp.local"], "poll_interval_s": 0.05}
    options = {"max_attempts": 1, "read_timeout_s": 5.0}
    async with running(fake_aws.url, aio_session, cloudmap=cloudmap, aws_options=options) as daemon:
        assert await daemon.store.wait_until(lambda: CORP in daemon.store.partitions and _has_result(daemon, CORP), 5)
        assert daemon.store.current is None
        status, body = await daemon_get(daemon, "/healthz")
        assert status == 503 and "ecs cluster prod in local/us-east-1" in json.loads(body)["reason"]
        assert await rcode(daemon, "billing") == dns.rcode.SERVFAIL  # in Cloud Map, but not yet served
        assert await rcode(daemon, "orders") == dns.rcode.SERVFAIL  # never NXDOMAIN, which resolvers cache
        assert (await daemon_get(daemon, "/v1/services"))[0] == 503
        status, body = await daemon_get(daemon, "/eureka/apps", Accept="application/json")
        assert status == 200 and json.loads(body)["applications"]["application"] == []

        assert await daemon.store.wait_for(0, timeout=10) is not None
        assert (await daemon_get(daemon, "/healthz"))[0] == 200
        assert await services(daemon) == ["billing", "orders"]
        status, body = await daemon_get(daemon, "/eureka/apps", Accept="application/json")
        assert sorted(a["name"] for a in json.loads(body)["applications"]["application"]) == ["BILLING", "ORDERS"]


def _has_result(daemon: Daemon, key: Any) -> bool:
    return daemon.store.partitions[key].result is not None


async def test_a_configured_cluster_that_does_not_exist_is_a_warning_and_the_others_are_served(
    fake_aws: FakeAws, estate: Estate, aio_session: AioSession
) -> None:
    estate.web_service("prod", "orders")
    with capture_logs() as logs:
        async with running(fake_aws.url, aio_session, ecs={"clusters": ["prod", "batch-prod"]}) as daemon:
            assert await daemon.store.wait_for(0, timeout=10) is not None
            metrics = daemon.metrics.registry.get_sample_value
            labels = {"source": "ecs", "partition": "ecs/local/us-east-1/batch-prod", "outcome": "ok"}
            assert await daemon.store.wait_until(
                lambda: (metrics("discobridge_source_refreshes_total", labels) or 0) > 2, 10
            )
            assert await services(daemon) == ["orders"]
            status, body = await daemon_get(daemon, "/healthz")
            warning = "ECS cluster 'batch-prod' does not exist in local/us-east-1"
            assert status == 200 and json.loads(body)["partitions"]["ecs/local/us-east-1/batch-prod"]["warnings"] == [
                warning
            ]
            assert warning.replace("'", "&#x27;").encode() in (await daemon_get(daemon, "/"))[1]
    assert len([e for e in logs if e["event"] == "ecs_cluster_not_found"]) == 1  # once, not once per poll


@pytest.mark.parametrize(
    ("code", "status"), [("AccessDeniedException", 400), ("ThrottlingException", 400)], ids=["denied", "throttled"]
)
async def test_one_cluster_failing_forever_keeps_its_data_while_another_changes(
    fake_aws: FakeAws, estate: Estate, aio_session: AioSession, code: str, status: int
) -> None:
    estate.web_service("prod", "orders")
    estate.web_service("batch", "reports")
    clock = FakeClock()
    tables: dict[str, Any] = {"ecs": {"clusters": ["prod", "batch"]}, "health": {"max_staleness_s": 60}}
    async with running(fake_aws.url, aio_session, clock, **tables) as daemon:
        assert await daemon.store.wait_for(0, timeout=10) is not None
        fake_aws.faults.fail("ListTasks", code=code, status=status, match='"cluster": "batch"')
        definition = estate.task_definition("orders", Container("web", ports=(8080,)))
        estate.place("prod", definition, estate.hosts("prod", 1), group="service:orders")

        def orders() -> int:
            snapshot = daemon.store.current
            return len(snapshot.services["orders"].endpoints) if snapshot else 0

        assert await daemon.store.wait_until(lambda: orders() == 2, 10)  # prod's change shows at once
        assert await daemon.store.wait_until(
            lambda: daemon.store.partitions[BATCH].attempts.consecutive_failures > 1, 10
        )
        assert await services(daemon) == ["orders", "reports"]  # batch's last good data kept
        status_code, body = await daemon_get(daemon, "/healthz")
        detail = json.loads(body)["partitions"]["ecs/local/us-east-1/batch"]
        assert status_code == 200 and code in detail["last_error"]
        assert detail["last_error"].startswith("ecs cluster batch in local/us-east-1: ListTasks failed")
        clock.now += 61
        prod = partition("prod")
        assert await daemon.store.wait_until(lambda: daemon.store.age_of(prod) == 0, 10)  # prod polled since
        status_code, body = await daemon_get(daemon, "/healthz")
        reason = json.loads(body)["reason"]
        assert status_code == 503 and reason.startswith("ecs cluster batch in local/us-east-1: data is 61")
        assert "cluster prod" not in reason


async def test_a_cluster_deleted_under_star_leaves_but_a_failed_listing_removes_nothing(
    fake_aws: FakeAws, estate: Estate, aio_session: AioSession
) -> None:
    estate.web_service("prod", "orders")
    estate.web_service("staging", "reports")
    async with running(fake_aws.url, aio_session) as daemon:
        assert await daemon.store.wait_until(lambda: daemon.store.current is not None, 10)
        assert await services(daemon) == ["orders", "reports"]
        fake_aws.faults.fail("ListClusters", code="ServerException", status=500)
        scope = STAGING.scope
        assert await daemon.store.wait_until(lambda: daemon.store.listings[scope].consecutive_failures > 2, 10)
        assert await services(daemon) == ["orders", "reports"]
        fake_aws.faults.clear()
        estate.ecs.delete_cluster(cluster="staging")
        assert await daemon.store.wait_until(lambda: STAGING not in daemon.store.partitions, 10)
        assert await daemon.store.wait_until(lambda: "reports" not in daemon.store.current.services, 10)  # type: ignore[union-attr]
        status, body = await daemon_get(daemon, "/healthz")
        assert status == 200, body


async def test_a_restart_during_an_outage_after_a_quiet_spell_is_healthy_with_the_last_good_polls_age(
    fake_aws: FakeAws, estate: Estate, aio_session: AioSession, tmp_path: Path
) -> None:
    estate.web_service("prod", "orders")
    path = tmp_path / "snapshot.json"
    tables: dict[str, Any] = {"snapshot": {"path": str(path)}, "health": {"max_staleness_s": 2.0}}
    async with running(fake_aws.url, aio_session, snapshot_interval_s=0.2, **tables) as first:
        assert first.saver is not None
        assert await first.store.wait_until(lambda: first.saver is not None and first.saver.written >= 1, 10)
        changed = first.store.generation
        # A quiet spell longer than max_staleness_s: nothing changes, polls keep confirming.
        assert await first.store.wait_until(lambda: first.saver is not None and first.saver.written >= 15, 20)
        assert first.store.generation == changed
    data = read_file(path)
    assert data is not None
    saved = decode(data, origin=str(path))
    quiet_s = -min(r.refreshed_at for r in saved.partitions.values()) + first.store.now()
    assert quiet_s < 1.0  # the file is dated by the last good poll, not by the last change

    dead = socket.socket()
    dead.bind(("127.0.0.1", 0))  # AWS unreachable after the restart
    try:
        async with running(f"http://127.0.0.1:{dead.getsockname()[1]}", aio_session, **tables) as second:
            assert second.store.current is not None  # answering before its own first poll
            status, body = await daemon_get(second, "/healthz")
            assert status == 200, body
            assert json.loads(body)["age_s"] < 2.0
            assert await services(second) == ["orders"]
    finally:
        dead.close()


async def test_a_restart_describes_no_known_task_definition_or_host(
    fake_aws: FakeAws, estate: Estate, aio_session: AioSession, tmp_path: Path
) -> None:
    estate.cluster("prod")
    hosts = estate.hosts("prod", 2)
    for name in ("orders", "billing", "search"):
        estate.service("prod", name, estate.task_definition(name, Container("web", ports=(8080,))), hosts)
    tables: dict[str, Any] = {"snapshot": {"path": str(tmp_path / "snapshot.json")}, "ecs": {"clusters": ["prod"]}}
    async with running(fake_aws.url, aio_session, snapshot_interval_s=0.1, **tables) as first:
        assert await first.store.wait_until(lambda: first.saver is not None and first.saver.written >= 1, 10)
    fake_aws.faults.calls.clear()
    async with running(fake_aws.url, aio_session, **tables) as second:
        assert second.store.current is not None and len(second.store.current.services) == 3
        metrics = second.metrics.registry.get_sample_value
        labels = {"source": "ecs", "partition": "ecs/local/us-east-1/prod", "outcome": "ok"}
        assert await second.store.wait_until(
            lambda: (metrics("discobridge_source_refreshes_total", labels) or 0) >= 2, 10
        )
    calls = fake_aws.faults.calls
    assert "DescribeTaskDefinition" not in calls and "DescribeContainerInstances" not in calls
    assert "DescribeInstances" not in calls and calls["DescribeTasks"] >= 1


async def test_a_first_poll_longer_than_the_call_timeout_completes_within_the_budget_describing_each_once(
    fake_aws: FakeAws, estate: Estate, aio_session: AioSession
) -> None:
    estate.cluster("prod")
    hosts = estate.hosts("prod", 2)
    for n in range(20):
        estate.service(
            "prod", f"svc-{n}", estate.task_definition(f"svc-{n}", Container("web", ports=(8080,))), hosts[:1]
        )
    # A quarter of the task-definition bucket (12 at once, then 5 per second), and the 15th
    # describe throttled: the first attempt fails after learning 14, the second learns the rest.
    fake_aws.faults.fail("DescribeTaskDefinition", code="ThrottlingException", status=400, times=1, after=14)
    fake_aws.faults.calls.clear()  # the simulated agent described them too, while placing tasks
    options = {"max_attempts": 1, "call_timeout_s": 1.0}
    tables: dict[str, Any] = {
        "aws": {"api_rate_fraction": 0.25},
        "ecs": {"health_refresh_s": 3600},
        "aws_options": options,
    }
    async with running(fake_aws.url, aio_session, **tables) as daemon:
        assert await daemon.store.wait_for(0, timeout=30) is not None
        assert len(daemon.store.current.services) == 20  # type: ignore[union-attr]
        sample = daemon.metrics.registry.get_sample_value
        described = sample(
            "discobridge_aws_calls_total", {**LOCAL_AWS, "operation": "DescribeTaskDefinition", "outcome": "ok"}
        )
        waited = sample("discobridge_aws_token_wait_seconds_total", {**LOCAL_AWS, "bucket": "ecs-task-definition-read"})
    assert described == 20  # each revision once, across the failed attempt and the next
    assert fake_aws.faults.calls["DescribeTaskDefinition"] == 21  # and the one throttled
    assert waited is not None and waited > 1.0  # the poll outlasted the call timeout, on budget


async def test_a_cluster_failing_after_its_tasks_are_described_is_given_up_on_at_startup(
    fake_aws: FakeAws, estate: Estate, aio_session: AioSession
) -> None:
    estate.web_service("prod", "orders")
    estate.web_service("batch", "reports")
    # The task role may list and describe tasks but not read batch's task definition: each
    # attempt re-describes batch's known tasks, which must not count as progress.
    fake_aws.faults.fail("DescribeTaskDefinition", code="AccessDeniedException", status=400, match="reports")
    tables: dict[str, Any] = {"ecs": {"clusters": ["prod", "batch"]}, "health": {"startup_wait_s": 1.0}}
    async with running(fake_aws.url, aio_session, **tables) as daemon:
        assert await daemon.store.wait_for(0, timeout=15) is not None  # published without batch
        assert await services(daemon) == ["orders"]
        status, body = await daemon_get(daemon, "/healthz")
        reason = json.loads(body)["reason"]
        assert status == 503 and reason.startswith("ecs cluster batch in local/us-east-1: no data")
        assert "AccessDeniedException" in reason


async def test_clusters_that_share_task_definitions_describe_each_once(
    fake_aws: FakeAws, estate: Estate, aio_session: AioSession
) -> None:
    definitions = [estate.task_definition(f"svc-{n}", Container("web", ports=(8080,))) for n in range(5)]
    for cluster in ("prod", "staging"):
        estate.cluster(cluster)
        hosts = estate.hosts(cluster, 1)
        for n, definition in enumerate(definitions):
            estate.service(cluster, f"svc-{n}", definition, hosts)
    fake_aws.faults.calls.clear()
    async with running(fake_aws.url, aio_session) as daemon:
        assert await daemon.store.wait_for(0, timeout=10) is not None
        assert len(daemon.store.current.services["svc-0"].endpoints) == 2  # type: ignore[union-attr]
    assert fake_aws.faults.calls["DescribeTaskDefinition"] == 5


async def test_every_endpoint_names_its_account_and_region_in_every_answer(
    fake_aws: FakeAws, estate: Estate, aio_session: AioSession
) -> None:
    estate.web_service("prod", "orders")
    async with running(fake_aws.url, aio_session, aws={"account_name": "shop-main"}) as daemon:
        assert await daemon.store.wait_for(0, timeout=10) is not None
        assert [k.id for k in daemon.store.partitions] == ["ecs/shop-main/us-east-1/prod"]
        (endpoint,) = json.loads((await daemon_get(daemon, "/v1/services/orders"))[1])["endpoints"]
        assert (endpoint["account"], endpoint["region"]) == ("shop-main", "us-east-1")
        _, body = await daemon_get(daemon, "/eureka/apps/ORDERS", Accept="application/json")
        metadata = json.loads(body)["application"]["instance"][0]["metadata"]
        assert (metadata["aws-account"], metadata["aws-region"]) == ("shop-main", "us-east-1")
        (group,) = json.loads((await daemon_get(daemon, "/v1/prometheus/targets"))[1])
        assert group["labels"]["__meta_discobridge_account"] == "shop-main"
        assert b"shop-main/us-east-1" in (await daemon_get(daemon, "/"))[1]

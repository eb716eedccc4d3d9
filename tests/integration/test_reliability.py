"""Fail-static under AWS faults, no false removals, and a quiet estate's AWS bill."""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import AsyncIterator, Callable
from typing import Any

import aiohttp
import dns.asyncquery
import dns.message
import dns.rcode
import pytest
from aiobotocore.session import AioSession

from discobridge.app import Daemon
from discobridge.aws import AwsClients
from discobridge.fakeaws.estate import Container, Estate
from discobridge.fakeaws.server import FakeAws
from discobridge.metrics import Metrics
from tests.conftest import daemon_get, make_config
from tests.helpers import LOCAL_AWS, PROD, FakeClock

MAX_STALENESS = 60.0


class Running:
    """A daemon on loopback with a fake clock, and helpers to read every frontend."""

    def __init__(self, daemon: Daemon, clock: FakeClock, estate: Estate) -> None:
        self.daemon, self.clock, self.estate = daemon, clock, estate

    @property
    def status(self) -> Any:
        return self.daemon.store.partitions[PROD].attempts

    async def failures(self, at_least: int) -> None:
        assert await self.daemon.store.wait_until(lambda: self.status.consecutive_failures >= at_least, 10)

    async def refreshes(self, count: int) -> None:
        """Wait for `count` more successful refreshes of the ECS partitions."""
        sample = self.daemon.metrics.registry.get_sample_value

        def done() -> float:
            keys = [k for k in self.daemon.store.partitions if k.source == "ecs"]
            labels = [{"source": "ecs", "partition": k.id, "outcome": "ok"} for k in keys]
            return sum(sample("discobridge_source_refreshes_total", label) or 0 for label in labels)

        target = done() + count
        assert await self.daemon.store.wait_until(lambda: done() >= target, 20)

    def addresses(self, service: str = "orders") -> list[str]:
        snapshot = self.daemon.store.current
        assert snapshot is not None
        return sorted(e.address for e in snapshot.services[service].endpoints)

    async def answers(self) -> tuple[Any, ...]:
        """What DNS, /v1 and /eureka answer for orders, and /healthz's status code and age."""
        query = dns.message.make_query(f"orders.{self.daemon.config.dns.zone}", "TXT")
        reply = await dns.asyncquery.udp(query, "127.0.0.1", port=self.daemon.dns.addresses[0].port, timeout=2)
        txt = sorted(item.to_text() for rrset in reply.answer for item in rrset)
        _, v1 = await daemon_get(self.daemon, "/v1/services/orders")
        _, eureka = await daemon_get(self.daemon, "/eureka/apps/ORDERS", Accept="application/json")
        status, body = await daemon_get(self.daemon, "/healthz")
        return txt, v1, eureka, (status, json.loads(body)["age_s"])


async def start(
    fake_aws_url: str, aio_session: AioSession, clock: FakeClock, read_timeout_s: float = 10.0, **ecs: Any
) -> Daemon:
    config = make_config(fake_aws_url, health={"max_staleness_s": MAX_STALENESS}, ecs=ecs or {})
    options = {"max_attempts": 1, "read_timeout_s": read_timeout_s}
    return Daemon(config, session=aio_session, aws_options=options, clock=clock)


@pytest.fixture
async def running(fake_aws: FakeAws, estate: Estate, aio_session: AioSession) -> AsyncIterator[Running]:
    estate.cluster("prod")
    definition = estate.task_definition("orders", Container("web", ports=(8080,)))
    estate.service("prod", "orders", definition, estate.hosts("prod", 2) * 2)
    clock = FakeClock()
    # A short read timeout, so the read-timeout fault (a 1.5 s delay) is one.
    async with await start(fake_aws.url, aio_session, clock, read_timeout_s=0.5) as daemon:
        await daemon.serve()
        assert await daemon.store.wait_for(0, timeout=10) is not None
        yield Running(daemon, clock, estate)


def new_task_on_new_host(estate: Estate) -> None:
    definition = estate.task_definition("orders", Container("web", ports=(8080,)))
    estate.place("prod", definition, estate.hosts("prod", 1), group="service:orders")


FAULTS: list[tuple[str, Callable[[FakeAws], None], str]] = [
    (
        "throttled-describe-tasks",
        lambda f: f.faults.fail("DescribeTasks", code="ThrottlingException", status=400),
        "ThrottlingException",
    ),
    ("ec2-503", lambda f: f.faults.fail("DescribeInstances", code="Unavailable", status=503), "Unavailable"),
    (
        "ec2-request-limit-xml",
        lambda f: f.faults.fail("DescribeInstances", code="RequestLimitExceeded", status=503),
        "RequestLimitExceeded",
    ),
    ("server-exception", lambda f: f.faults.fail("ListTasks", code="ServerException", status=500), "ServerException"),
    ("read-timeout", lambda f: f.faults.delay("ListTasks", 1.5), "ReadTimeoutError"),
    ("dropped-connection", lambda f: f.faults.drop("ListTasks"), "ListTasks failed"),
    (
        "access-denied",
        lambda f: f.faults.fail("ListTasks", code="AccessDeniedException", status=400),
        "AccessDeniedException",
    ),
    (
        "cluster-deleted",
        lambda f: f.faults.fail("ListTasks", code="ClusterNotFoundException", status=400),
        "ClusterNotFoundException",
    ),
]


@pytest.mark.parametrize(("inject", "error"), [f[1:] for f in FAULTS], ids=[f[0] for f in FAULTS])
async def test_answers_hold_through_a_fault_and_resume_after(
    running: Running, fake_aws: FakeAws, inject: Callable[[FakeAws], None], error: str
) -> None:
    before = await running.answers()
    assert before[3] == (200, 0.0)
    inject(fake_aws)
    new_task_on_new_host(running.estate)  # a change the faulty call would have to reveal
    await running.failures(2)
    assert error in str(running.status.last_error)

    running.clock.now += MAX_STALENESS - 1
    during = await running.answers()
    assert during[:3] == before[:3]  # DNS, /v1 and /eureka unchanged
    assert during[3] == (200, MAX_STALENESS - 1)  # stale, but not yet too stale
    running.clock.now += 2
    assert (await running.answers())[3][0] == 503

    fake_aws.faults.clear()
    assert await running.daemon.store.wait_until(lambda: len(running.addresses()) == 5, timeout=10)
    after = await running.answers()
    assert after[3] == (200, 0.0) and after[0] != before[0]


async def test_vanished_tasks_stay_until_ecs_confirms_they_stopped(running: Running, fake_aws: FakeAws) -> None:
    everything = running.addresses()
    assert len(everything) == 4

    def lose_three(answer: dict[str, Any]) -> dict[str, Any]:
        return {**answer, "taskArns": answer["taskArns"][:1]}

    fake_aws.faults.rewrite("ListTasks", lose_three)
    await running.refreshes(3)
    assert running.addresses() == everything  # ECS still describes them RUNNING: kept
    sample = running.daemon.metrics.registry.get_sample_value
    assert (sample("discobridge_source_list_shrinks_total", {"source": "ecs"}) or 0) >= 1


async def test_tasks_that_really_stopped_leave_within_one_poll(running: Running) -> None:
    snapshot = running.daemon.store.current
    assert snapshot is not None
    tasks = [e.task_arn for e in snapshot.services["orders"].endpoints]
    await running.refreshes(1)
    for arn in tasks[:2]:
        running.estate.stop("prod", arn)
    await running.refreshes(2)  # the second one started after the stops
    assert len(running.addresses()) == 2


async def test_a_quiet_estate_of_500_tasks_costs_no_describe_calls(
    fake_aws: FakeAws, estate: Estate, aio_session: AioSession
) -> None:
    estate.cluster("big")
    definition = estate.task_definition("worker", Container("app", ports=(8080,)))
    estate.service("big", "worker", definition, estate.hosts("big", 10) * 50)
    async with await start(fake_aws.url, aio_session, FakeClock(), clusters=["big"], health_refresh_s=3600) as daemon:
        await daemon.serve()
        assert await daemon.store.wait_for(0, timeout=20) is not None
        assert len(daemon.store.current.services["worker"].endpoints) == 500  # type: ignore[union-attr]
        running = Running(daemon, FakeClock(), estate)
        await running.refreshes(1)  # counted between two completed polls: none is half-way
        before = dict(fake_aws.faults.calls)
        await running.refreshes(3)
        calls = {op: n - before.get(op, 0) for op, n in fake_aws.faults.calls.items() if n != before.get(op, 0)}
    assert (
        "DescribeTasks" not in calls and "DescribeInstances" not in calls and "DescribeContainerInstances" not in calls
    )
    # Per poll: ListTasks in pages of 100, and one ListContainerInstances for draining hosts.
    polls = calls["ListContainerInstances"]
    assert polls >= 3 and calls["ListTasks"] == 5 * polls


async def test_startup_with_aws_down_serves_servfail_and_503_then_recovers(aio_session: AioSession) -> None:
    port = reserve_port()  # nothing listens there yet
    async with await start(f"http://127.0.0.1:{port}", aio_session, FakeClock()) as daemon:
        await daemon.serve()
        assert await daemon.store.wait_until(lambda: daemon.store.listings[PROD.scope].consecutive_failures >= 2, 10)
        failures = daemon.store.listings[PROD.scope]
        query = dns.message.make_query(f"orders.{daemon.config.dns.zone}", "A")
        reply = await dns.asyncquery.udp(query, "127.0.0.1", port=daemon.dns.addresses[0].port, timeout=2)
        assert reply.rcode() == dns.rcode.SERVFAIL and failures.last_error is not None
        assert daemon.http.address is not None
        url = f"http://127.0.0.1:{daemon.http.address.port}/healthz"
        async with aiohttp.ClientSession() as client, client.get(url) as response:
            assert response.status == 503
        server = FakeAws(port=port).start()  # AWS comes up: the daemon never gave up
        try:
            assert await daemon.store.wait_for(0, timeout=15) is not None
        finally:
            server.stop()


def reserve_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def test_aws_stopped_entirely_keeps_answers_until_it_returns(
    fake_aws: FakeAws, estate: Estate, aio_session: AioSession
) -> None:
    port = reserve_port()
    own = FakeAws(port=port).start()  # same moto state as the session's server, its own socket
    estate.cluster("prod")
    definition = estate.task_definition("orders", Container("web", ports=(8080,)))
    estate.service("prod", "orders", definition, estate.hosts("prod", 2))
    clock = FakeClock()
    try:
        async with await start(own.url, aio_session, clock) as daemon:
            await daemon.serve()
            assert await daemon.store.wait_for(0, timeout=10) is not None
            running = Running(daemon, clock, estate)
            before = await running.answers()
            own.stop()
            await running.failures(2)
            assert (await running.answers())[:3] == before[:3]
            new_task_on_new_host(estate)  # through the session's server: same moto state
            own = FakeAws(port=port).start()
            assert await daemon.store.wait_until(lambda: len(running.addresses()) == 3, timeout=15)
    finally:
        own.stop()


async def test_throttles_are_retried_with_backoff_and_counted(
    fake_aws: FakeAws, estate: Estate, aio_session: AioSession
) -> None:
    estate.web_service("prod", "orders")
    fake_aws.faults.fail("DescribeTasks", code="ThrottlingException", status=400, message="Rate exceeded", times=2)
    config = make_config(fake_aws.url)
    options = {"max_attempts": 3, "backoff_s": 0.01, "backoff_cap_s": 0.05}
    async with Daemon(config, session=aio_session, aws_options=options) as daemon:
        assert await daemon.refresh_all() is True  # two throttles, then the third attempt succeeds
        sample = daemon.metrics.registry.get_sample_value
        assert (
            sample(
                "discobridge_aws_retries_total",
                {**LOCAL_AWS, "operation": "DescribeTasks", "reason": "ThrottlingException"},
            )
            == 2
        )
        assert (
            sample("discobridge_aws_calls_total", {**LOCAL_AWS, "operation": "DescribeTasks", "outcome": "throttled"})
            == 2
        )
        assert sample("discobridge_aws_calls_total", {**LOCAL_AWS, "operation": "DescribeTasks", "outcome": "ok"}) == 1
        fake_aws.faults.fail("ListTasks", code="AccessDeniedException", status=400)
        assert await daemon.refresh_all() is False  # never retried: it will not get better
        assert (
            sample(
                "discobridge_aws_calls_total",
                {**LOCAL_AWS, "operation": "ListTasks", "outcome": "AccessDeniedException"},
            )
            == 1
        )


async def test_calls_wait_for_the_budget_when_it_is_spent(
    fake_aws: FakeAws, estate: Estate, aio_session: AioSession
) -> None:
    estate.web_service("prod", "orders")
    # 5% of ECS's cluster-resource bucket: a burst of 5 calls, then one per second.
    config = make_config(fake_aws.url, aws={"api_rate_fraction": 0.05})
    async with Daemon(config, session=aio_session, aws_options={"max_attempts": 1}) as daemon:
        for _ in range(3):  # 3 polls of 3-4 calls each from a burst of 5
            assert await daemon.refresh_all() is True
        waited = daemon.metrics.registry.get_sample_value(
            "discobridge_aws_token_wait_seconds_total", {**LOCAL_AWS, "bucket": "ecs-cluster-resource-read"}
        )
    assert waited is not None and waited > 1.0


async def test_a_call_cancelled_while_waiting_for_budget_gives_its_token_back(
    fake_aws: FakeAws, estate: Estate, aio_session: AioSession
) -> None:
    estate.cluster("prod")
    # 5% of the cluster-resource bucket: a burst of 5, then one call per second.
    config = make_config(fake_aws.url, aws={"api_rate_fraction": 0.05})
    async with AwsClients(config=config.aws, metrics=Metrics.create(), session=aio_session, max_attempts=1) as aws:
        for _ in range(5):
            await aws.call("ecs", "ListTasks", cluster="prod")
        waiting = [asyncio.create_task(aws.call("ecs", "ListTasks", cluster="prod")) for _ in range(5)]
        await asyncio.sleep(0.1)  # all five are waiting for tokens 1 to 5 s away
        for task in waiting:
            task.cancel()
        await asyncio.gather(*waiting, return_exceptions=True)
        started = asyncio.get_running_loop().time()
        await aws.call("ecs", "ListTasks", cluster="prod")
        # Without the refunds this call would queue behind the five cancelled ones (6 s).
        assert asyncio.get_running_loop().time() - started < 1.5

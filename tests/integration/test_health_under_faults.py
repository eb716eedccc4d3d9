"""/healthz of the whole daemon flips to 503 when AWS fails past max_staleness_s, and back."""

from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp
import pytest
from aiobotocore.session import AioSession

from discobridge.app import Daemon
from discobridge.fakeaws.estate import Container, Estate
from discobridge.fakeaws.server import FakeAws
from tests.conftest import make_config
from tests.helpers import PROD, FakeClock


@pytest.fixture
async def daemon(fake_aws: FakeAws, estate: Estate, aio_session: AioSession) -> AsyncIterator[tuple[Daemon, FakeClock]]:
    estate.cluster("prod")
    definition = estate.task_definition("orders", Container("web", ports=(8080,)))
    estate.service("prod", "orders", definition, estate.hosts("prod", 2))
    clock = FakeClock()
    config = make_config(fake_aws.url, health={"max_staleness_s": 60})
    async with Daemon(config, session=aio_session, aws_options={"max_attempts": 1}, clock=clock) as running:
        await running.serve()
        assert await running.store.wait_for(0, timeout=10) is not None
        yield running, clock


async def healthz(daemon: Daemon) -> tuple[int, dict[str, object]]:
    assert daemon.http.address is not None
    url = f"http://127.0.0.1:{daemon.http.address.port}/healthz"
    async with aiohttp.ClientSession() as client, client.get(url) as response:
        return response.status, await response.json()


async def test_healthz_turns_503_when_polls_fail_past_max_staleness_and_200_after_recovery(
    daemon: tuple[Daemon, FakeClock], fake_aws: FakeAws
) -> None:
    running, clock = daemon
    assert (await healthz(running))[0] == 200

    def failures() -> int:
        return running.store.partitions[PROD].attempts.consecutive_failures

    fake_aws.faults.fail("ListTasks", code="ThrottlingException", status=400, message="Rate exceeded")
    assert await running.store.wait_until(lambda: failures() >= 2, timeout=10)
    clock.now += 30  # failing, but not yet stale: still serving the last good data
    assert (await healthz(running))[0] == 200
    clock.now += 31
    code, body = await healthz(running)
    assert code == 503 and "over the 60 s limit" in str(body["reason"]) and "ThrottlingException" in str(body["reason"])
    snapshot = running.store.current
    assert snapshot is not None and len(snapshot.services["orders"].endpoints) == 2  # nothing removed

    fake_aws.faults.clear()
    assert await running.store.wait_until(lambda: failures() == 0, timeout=10)
    code, body = await healthz(running)
    assert code == 200 and body["status"] == "ok"

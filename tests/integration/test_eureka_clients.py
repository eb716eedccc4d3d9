"""Real Eureka clients (py-eureka-client over XML, eureka-js-client over JSON, with and without
delta) against the daemon serving an ECS estate from the fake AWS, while that estate changes."""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from aiobotocore.session import AioSession

from discobridge.app import Daemon
from discobridge.fakeaws.estate import Container, Estate
from discobridge.fakeaws.server import FakeAws
from discobridge.model import Health
from tests.conftest import ROOT, make_config

CLIENTS = ROOT / "tests" / "clients"
APPS, VIPS = "ORDERS,PAYMENTS", "orders,payments"
View = dict[str, dict[str, list[str]]]


@pytest.fixture(scope="session")
def js_client() -> Path:
    """eureka-js-client 4.5.0, installed from the npm registry by the test setup."""
    if shutil.which("node") is None or shutil.which("npm") is None:
        pytest.fail("Node.js and npm are needed for the eureka-js-client tests")
    if not (CLIENTS / "node_modules" / "eureka-js-client").is_dir():
        subprocess.run(["npm", "ci", "--no-audit", "--no-fund"], cwd=CLIENTS, check=True, capture_output=True)
    return CLIENTS / "watch_js.js"


class Estate2:
    """ORDERS: two tasks on one host (distinct ports); PAYMENTS: one task on another host."""

    def __init__(self, estate: Estate) -> None:
        self.estate = estate
        estate.cluster("prod")
        self.host_a, self.host_b = estate.hosts("prod", 2)
        self.orders_def = estate.task_definition("orders", Container("web", ports=(8080,), health_check=True))
        payments_def = estate.task_definition("payments", Container("api", ports=(9090,)))
        self.orders = estate.service("prod", "orders", self.orders_def, [self.host_a, self.host_a])
        self.payments = estate.service("prod", "payments", payments_def, [self.host_b])


@pytest.fixture
async def running(fake_aws: FakeAws, estate: Estate, aio_session: AioSession) -> AsyncIterator[tuple[Daemon, Estate2]]:
    seeded = Estate2(estate)
    config = make_config(fake_aws.url)
    async with Daemon(config, session=aio_session, aws_options={"max_attempts": 1}) as daemon:
        await daemon.serve()
        assert await daemon.store.wait_for(0, timeout=10) is not None
        yield daemon, seeded


def expected(daemon: Daemon) -> View:
    """The UP host:port sets a client must resolve, from the snapshot the daemon serves."""
    snapshot = daemon.store.current
    assert snapshot is not None
    view: View = {"apps": {}, "vips": {}}
    for name in ("orders", "payments"):
        up = sorted(e.address for e in snapshot.services[name].endpoints if e.health is Health.HEALTHY)
        view["apps"][name.upper()] = up
        view["vips"][name] = up
    return view


def serves(daemon: Daemon, task_arn: str) -> bool:
    snapshot = daemon.store.current
    return snapshot is not None and any(e.task_arn == task_arn for e in snapshot.services["orders"].endpoints)


class Watcher:
    """A client process printing its view as JSON lines; waits for a wanted view."""

    def __init__(self, name: str, process: asyncio.subprocess.Process) -> None:
        self.name, self.process = name, process
        self.last: dict[str, object] | None = None

    async def until(self, wanted: View, timeout: float) -> None:
        """Read views until one matches; `wanted` may hold only "vips" (see below)."""
        assert self.process.stdout is not None
        if self.last is not None and {k: self.last[k] for k in wanted} == wanted:
            return  # its latest view (printed only on change) already matches
        try:
            async with asyncio.timeout(timeout):
                while True:
                    line = await self.process.stdout.readline()
                    assert line, f"{self.name} exited"
                    self.last = json.loads(line)
                    if {k: self.last[k] for k in wanted} == wanted:
                        return
        except TimeoutError:
            raise AssertionError(f"{self.name} never showed {wanted}; last view {self.last}") from None

    async def stop(self) -> None:
        if self.process.returncode is None:
            self.process.terminate()
        await self.process.wait()


def after_delta(watcher: Watcher, view: View) -> View:
    """eureka-js-client 4.5.0 merges deltas into its by-app cache at the wrong index
    (EurekaClient.js deleteInstance/modifyInstance: `splice(cache.vip[...], 1)`, an array used as
    an index, so always index 0); its by-VIP cache, which Spring-style lookups use, is right."""
    return {"vips": view["vips"]} if watcher.name.endswith("+delta") else view


async def start_watchers(daemon: Daemon, js: Path) -> list[Watcher]:
    assert daemon.http.address is not None
    port = str(daemon.http.address.port)
    commands = {
        "py-eureka-client": [
            sys.executable,
            str(CLIENTS / "watch_py.py"),
            f"http://127.0.0.1:{port}/eureka/",
            APPS,
            VIPS,
        ],
        "eureka-js-client": ["node", str(js), port, APPS, VIPS, "0"],
        "eureka-js-client+delta": ["node", str(js), port, APPS, VIPS, "1"],
    }
    return [
        Watcher(name, await asyncio.create_subprocess_exec(*cmd, stdout=asyncio.subprocess.PIPE))
        for name, cmd in commands.items()
    ]


async def get(daemon: Daemon, path: str, accept: str = "application/json") -> tuple[int, dict[str, object]]:
    assert daemon.http.address is not None
    url = f"http://127.0.0.1:{daemon.http.address.port}{path}"
    async with aiohttp.ClientSession() as client, client.get(url, headers={"Accept": accept}) as response:
        return response.status, await response.json()


async def test_clients_resolve_the_estate_and_follow_changes(
    running: tuple[Daemon, Estate2], js_client: Path, fake_aws: FakeAws
) -> None:
    daemon, seeded = running
    view = expected(daemon)
    assert len(view["apps"]["ORDERS"]) == 2 and len({a.split(":")[0] for a in view["apps"]["ORDERS"]}) == 1
    watchers = await start_watchers(daemon, js_client)
    try:
        for watcher in watchers:
            await watcher.until(view, timeout=20)

        # A replacement with equal counts: one task stops, another starts. The hash stays UP_3_,
        # so only a real delta (ADDED + DELETED) tells the delta-driven clients.
        seeded.estate.stop("prod", seeded.orders[0])
        (new_task,) = seeded.estate.place("prod", seeded.orders_def, [seeded.host_a], group="service:orders")
        assert await daemon.store.wait_until(
            lambda: serves(daemon, new_task) and not serves(daemon, seeded.orders[0]), 10
        )
        replaced = expected(daemon)
        assert replaced != view and len(replaced["apps"]["ORDERS"]) == 2
        # Within two refresh intervals of each client (1 s for py, 0.3 s for js), plus one poll.
        for watcher in watchers:
            await watcher.until(after_delta(watcher, replaced), timeout=2 * 1.0 + 1.0)

        # A task turning unhealthy: DOWN, dropped by every client, counted in the hash.
        seeded.estate.set_health("prod", seeded.orders[1], "UNHEALTHY")
        assert await daemon.store.wait_until(lambda: len(expected(daemon)["apps"]["ORDERS"]) == 1, timeout=10)
        sick = expected(daemon)
        assert len(sick["apps"]["ORDERS"]) == 1
        for watcher in watchers:
            await watcher.until(after_delta(watcher, sick), timeout=2 * 1.0 + 1.0)
        status, body = await get(daemon, "/eureka/apps/")
        registry = body["applications"]
        assert status == 200 and registry["apps__hashcode"] == "DOWN_1_UP_2_"  # type: ignore[index]

        # AWS failing for several polls: apps and apps/delta stay 200 with the last good registry.
        fake_aws.faults.fail("ListTasks", code="ServerException", status=500)
        partitions = daemon.store
        assert await partitions.wait_until(
            lambda: max(s.attempts.consecutive_failures for s in partitions.partitions.values()) >= 3, 10
        )
        for path in ("/eureka/apps/", "/eureka/apps/delta", "/eureka/v2/apps/"):
            status, body = await get(daemon, path)
            assert status == 200 and body["applications"]["apps__hashcode"] == "DOWN_1_UP_2_"  # type: ignore[index]
        for watcher in watchers:
            await watcher.until(after_delta(watcher, sick), timeout=5)
    finally:
        for watcher in watchers:
            await watcher.stop()

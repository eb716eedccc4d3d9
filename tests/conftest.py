"""Shared fixtures: one fake AWS server per session, reset per test; configs that point at it."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Iterator, Sequence
from contextlib import asynccontextmanager
from typing import Any

import pytest
from aiobotocore.session import AioSession, get_session

# Nothing in a test may reach the EC2 metadata service (a non-loopback address).
os.environ["AWS_EC2_METADATA_DISABLED"] = "true"

from discobridge.app import Daemon
from discobridge.config import Config, parse_config
from discobridge.fakeaws.estate import Estate
from discobridge.fakeaws.server import FakeAws
from tests.helpers import ROOT


@pytest.fixture(autouse=True)
async def no_task_left_running() -> AsyncIterator[None]:
    """Fail a test that leaves an asyncio task running (the asyncio cousin of Go's goleak)."""
    yield
    current = asyncio.current_task()
    leaked = [t for t in asyncio.all_tasks() if t is not current and not t.done()]
    assert not leaked, f"tasks left running: {leaked}"


@pytest.fixture(scope="session")
def fake_aws_server() -> Iterator[FakeAws]:
    server = FakeAws().start()
    yield server
    server.stop()


@pytest.fixture
def fake_aws(fake_aws_server: FakeAws) -> FakeAws:
    fake_aws_server.reset()
    fake_aws_server.faults.calls.clear()
    return fake_aws_server


@pytest.fixture
def estate(fake_aws: FakeAws) -> Estate:
    return Estate(fake_aws.url)


@pytest.fixture(scope="session")
def aio_session() -> AioSession:
    # One session for the whole run: botocore parses its service models once.
    return get_session()


def make_config(endpoint_url: str, accounts: Sequence[dict[str, Any]] = (), **tables: dict[str, Any]) -> Config:
    """A config for tests: fast polls, loopback listeners, overridable per table; `accounts`
    are [[accounts]] entries."""
    base: dict[str, dict[str, Any]] = {
        # The whole AWS rate in tests: the default quarter would slow polls that run every 50 ms.
        "aws": {"region": "us-east-1", "endpoint_url": endpoint_url, "api_rate_fraction": 1.0},
        "ecs": {"clusters": ["*"], "poll_interval_s": 0.05, "health_refresh_s": 0.05},
        "dns": {"zone": "disco.test", "listen": ["127.0.0.1:0"]},
        "http": {"listen": "127.0.0.1:0"},
    }
    for table, values in tables.items():
        base.setdefault(table, {}).update(values)
    text = "\n".join(
        f"[{table}]\n" + "\n".join(f"{key} = {_toml(value)}" for key, value in values.items())
        for table, values in base.items()
    )
    text += "".join(
        "\n[[accounts]]\n" + "\n".join(f"{key} = {_toml(value)}" for key, value in account.items())
        for account in accounts
    )
    return parse_config(text, "<test>")


@asynccontextmanager
async def running(url: str, session: AioSession, clock: Any = None, **tables: Any) -> AsyncIterator[Daemon]:
    """A daemon on loopback against `url`, serving until the block ends."""
    options = tables.pop("aws_options", {"max_attempts": 1})
    extra: dict[str, Any] = {"clock": clock} if clock is not None else {}
    extra["events_wait_s"] = tables.pop("events_wait_s", 20)
    if "utc_now" in tables:
        extra["utc_now"] = tables.pop("utc_now")
    interval = tables.pop("snapshot_interval_s", 10.0)
    config = make_config(url, **tables)
    async with Daemon(config, session=session, aws_options=options, snapshot_interval_s=interval, **extra) as daemon:
        await daemon.serve()
        yield daemon


def _toml(value: Any) -> str:
    if isinstance(value, str):
        return f'"{value}"'
    if isinstance(value, list):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    return repr(value)


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--update-golden", action="store_true", help="rewrite golden files from current output")


@pytest.fixture
def golden(request: pytest.FixtureRequest) -> Any:
    """Compare bytes with tests/data/<name>, or rewrite it under --update-golden."""

    def check(name: str, actual: bytes) -> None:
        path = ROOT / "tests" / "data" / name
        if request.config.getoption("--update-golden"):
            path.write_bytes(actual)
        assert path.exists(), f"{path} is missing: run pytest --update-golden"
        assert actual == path.read_bytes(), f"{name} differs from the golden file (pytest --update-golden)"

    return check


async def daemon_get(daemon: Any, path: str, **headers: str) -> tuple[int, bytes]:
    """GET `path` from a running Daemon's HTTP frontend: the status and the body."""
    import aiohttp  # noqa: PLC0415 - only the tests that run a daemon need it

    assert daemon.http.address is not None
    url = f"http://127.0.0.1:{daemon.http.address.port}{path}"
    async with aiohttp.ClientSession() as client, client.get(url, headers=headers) as response:
        return response.status, await response.read()

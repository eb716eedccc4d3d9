"""The status page of a daemon serving the demo estate, rendered by a real headless Chromium."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

import pytest
from aiobotocore.session import AioSession

from discobridge.app import Daemon
from discobridge.fakeaws.demo import seed_demo
from discobridge.fakeaws.estate import Container, Estate
from discobridge.fakeaws.server import FakeAws
from discobridge.frontends.keys import STATE
from tests.conftest import make_config
from tests.helpers import system_tool


async def render(url: str, profile: Path, *args: str) -> bytes:
    """Run headless Chromium on `url` with no network but loopback in use."""
    chromium = system_tool("chromium", "chromium-browser", package="chromium")
    process = await asyncio.create_subprocess_exec(
        chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
        f"--user-data-dir={profile}", "--window-size=1280,1000", *args, url,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    stdout, _ = await asyncio.wait_for(process.communicate(), timeout=60)
    assert process.returncode == 0
    return stdout


@pytest.mark.browser
async def test_status_page_renders_the_demo_estate_in_chromium(
    fake_aws: FakeAws, estate: Estate, aio_session: AioSession, tmp_path: Path
) -> None:
    seed_demo(estate)
    config = make_config(fake_aws.url)
    async with Daemon(config, session=aio_session) as daemon:
        await daemon.serve()
        assert await daemon.store.wait_for(0, timeout=10) is not None
        assert daemon.http.address is not None
        url = f"http://127.0.0.1:{daemon.http.address.port}/"

        # The page refreshes itself: it long-polls for a newer snapshot, swaps its content in, and
        # asks again a second later. Chromium's virtual time stands still while a request is open
        # and its budget (1.5 s) ends within the second wait: the DOM is dumped after two refreshes.
        state = daemon.http.app[STATE]
        state.on_status_refresh = daemon.store.wake_waiters  # so the wait below sees each request
        before = state.status_refreshes
        loading = asyncio.create_task(render(url, tmp_path / "profile", "--dump-dom", "--virtual-time-budget=1500"))
        for refresh, name in enumerate(("late-arrival", "later-still"), start=1):
            assert await daemon.store.wait_until(lambda n=refresh: state.status_refreshes >= before + n, 30)
            definition = estate.task_definition(name, Container("web", ports=(8080,)))
            estate.service("staging", name, definition, estate.hosts("staging", 1))
        dom = (await loading).decode()
        screenshot = tmp_path / "status.png"  # after: its own page's refresh must not count above
        await render(url, tmp_path / "profile2", f"--screenshot={screenshot}")
        snapshot = daemon.store.current
        assert snapshot is not None and "later-still" in snapshot.services
    for text in ("discobridge", "serving", "orders", "checkout", "payments", "draining", "unhealthy", "us-east-1b"):
        assert text in dom
    assert "late-arrival" in dom and "later-still" in dom  # not there when the page loaded: refreshes brought them
    services = snapshot.services.values()
    endpoints, serving = sum(len(s.endpoints) for s in services), sum(len(s.serving) for s in services)
    assert f"{len(services)} services · {endpoints} endpoints · {serving} serving · " in dom
    order = re.findall(r"<section id=\"([^\"]+)\" class=\"(idle|live)\"", dom)
    assert order[0] == ("report-builder", "idle")  # on a draining host: serves nothing, listed first
    assert [name for name, kind in order if kind == "live"] == sorted(n for n, k in order if k == "live")
    assert "yes, fail open" not in dom and dom.count("<section") == len(services)
    assert 'id="filter"' in dom
    assert screenshot.read_bytes().startswith(b"\x89PNG") and screenshot.stat().st_size > 10_000

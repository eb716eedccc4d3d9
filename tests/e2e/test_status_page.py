"""The status page of a daemon serving the demo estate, rendered by a real headless Chromium."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from aiobotocore.session import AioSession

from discobridge.app import Daemon
from discobridge.fakeaws.demo import seed_demo
from discobridge.fakeaws.estate import Estate
from discobridge.fakeaws.server import FakeAws
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
        dom = (await render(url, tmp_path / "profile", "--dump-dom")).decode()
        screenshot = tmp_path / "status.png"
        await render(url, tmp_path / "profile2", f"--screenshot={screenshot}")
    for text in ("discobridge", "serving", "orders", "checkout", "payments", "draining", "unhealthy", "us-east-1b"):
        assert text in dom
    assert dom.count("<section") == 5
    assert screenshot.read_bytes().startswith(b"\x89PNG") and screenshot.stat().st_size > 10_000

"""The real Prometheus (Debian's binary) discovers the estate through discobridge, both ways:
http_sd_configs on /v1/prometheus/targets?port=metrics, and eureka_sd_configs on /eureka (its Go
Eureka client, a third real one). Every scrape config ends by dropping every target, so Prometheus
never connects to an estate address (they are data, not hosts); dropped targets keep their
discovered labels in /api/v1/targets, which is what these tests read."""

from __future__ import annotations

import asyncio
import json
import socket
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
from aiobotocore.session import AioSession

from discobridge.fakeaws.estate import Container, Estate
from discobridge.fakeaws.server import FakeAws
from tests.conftest import running
from tests.helpers import free_port, system_tool

REFRESH_S = 1
API = Container("app", ports=(8080, 9102), port_names={9102: "metrics"})
DROP_EVERY_TARGET = [{"source_labels": ["__address__"], "regex": ".+", "action": "drop"}]

Targets = dict[str, list[dict[str, str]]]  # job -> the discovered labels of each dropped target


def config(http_port: int) -> dict[str, Any]:
    base = f"http://127.0.0.1:{http_port}"
    return {
        "global": {"scrape_interval": "1h", "evaluation_interval": "1h"},
        "scrape_configs": [
            {
                "job_name": "http-sd",
                "http_sd_configs": [
                    {"url": f"{base}/v1/prometheus/targets?port=metrics", "refresh_interval": f"{REFRESH_S}s"}
                ],
                "relabel_configs": DROP_EVERY_TARGET,
            },
            {
                "job_name": "eureka-sd",
                "eureka_sd_configs": [{"server": f"{base}/eureka", "refresh_interval": f"{REFRESH_S}s"}],
                "relabel_configs": DROP_EVERY_TARGET,
            },
        ],
    }


@asynccontextmanager
async def prometheus(tmp_path: Path, http_port: int) -> AsyncIterator[Callable[[], Any]]:
    """Prometheus on 127.0.0.1 with its own storage; yields a reader of its dropped targets."""
    binary = system_tool("prometheus", package="prometheus")
    path = tmp_path / "prometheus.yml"
    path.write_text(json.dumps(config(http_port)))  # YAML is a superset of JSON
    port = free_port(socket.SOCK_STREAM)
    process = await asyncio.create_subprocess_exec(
        binary, f"--config.file={path}", f"--storage.tsdb.path={tmp_path / 'data'}",
        f"--web.listen-address=127.0.0.1:{port}", "--log.level=warn",
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
    )  # fmt: skip

    async def targets() -> Targets:
        url = f"http://127.0.0.1:{port}/api/v1/targets?state=any"
        async with aiohttp.ClientSession() as client:
            try:
                async with client.get(url) as response:
                    data = (await response.json())["data"]
            except aiohttp.ClientError:
                return {}  # not listening yet
        found: Targets = {}
        for target in data.get("droppedTargets", []):
            labels = target["discoveredLabels"]
            found.setdefault(labels["job"], []).append(labels)
        assert not data.get("activeTargets"), "a target was kept: Prometheus would scrape it"
        return found

    try:
        yield targets
    finally:
        process.terminate()
        await process.wait()


async def until(read: Callable[[], Any], check: Callable[[Targets], bool], timeout_s: float) -> Targets:
    """Read Prometheus' targets until `check` holds: an outside process has no event to wait on."""
    deadline = time.monotonic() + timeout_s
    while True:
        found = await read()
        if check(found) or time.monotonic() > deadline:
            return found
        await asyncio.sleep(0.2)


def addresses(found: Targets, job: str) -> list[str]:
    return sorted(t["__address__"] for t in found.get(job, []))


async def test_prometheus_discovers_the_estate_by_http_sd_and_eureka_sd_and_follows_a_replacement(
    fake_aws: FakeAws, estate: Estate, aio_session: AioSession, tmp_path: Path
) -> None:
    estate.cluster("prod")
    hosts = estate.hosts("prod", 3)
    definition = estate.task_definition("api", API)
    tasks = estate.service("prod", "api", definition, hosts[:2])
    async with running(fake_aws.url, aio_session) as daemon, prometheus(tmp_path, daemon.http.address.port) as read:  # type: ignore[union-attr]
        assert await daemon.store.wait_for(0, timeout=10) is not None

        def expected() -> tuple[list[str], list[str]]:
            endpoints = daemon.store.current.services["api"].endpoints  # type: ignore[union-attr]
            metrics = sorted(f"{e.host_ip}:{e.port('metrics')}" for e in endpoints)
            return metrics, sorted(e.address for e in endpoints)

        metrics, main = expected()
        found = await until(read, lambda f: addresses(f, "http-sd") == metrics and len(f.get("eureka-sd", [])) == 2, 60)
        assert addresses(found, "http-sd") == metrics
        labels = found["http-sd"][0]
        assert labels["__meta_discobridge_service"] == "api" and labels["__meta_discobridge_cluster"] == "prod"
        assert labels["__meta_discobridge_port_main"] in {a.rsplit(":", 1)[1] for a in main}
        eureka = found["eureka-sd"]
        assert {t["__meta_eureka_app_name"] for t in eureka} == {"API"}
        assert (
            sorted(f"{t['__meta_eureka_app_instance_ip_addr']}:{t['__meta_eureka_app_instance_port']}" for t in eureka)
            == main
        )
        assert (
            sorted(
                f"{t['__meta_eureka_app_instance_ip_addr']}:{t['__meta_eureka_app_instance_metadata_management_port']}"
                for t in eureka
            )
            == metrics
        )  # the metadata eureka_sd relabelling reads the metrics port from

        # A task replaced: both ways follow within two refresh intervals of the change being served.
        estate.stop("prod", tasks[0])
        estate.place("prod", definition, hosts[2:], group="service:api")
        # Both halves served (the stop and the start may land in two snapshots): two targets, one new.
        assert await daemon.store.wait_until(lambda: len(expected()[0]) == 2 and expected()[0] != metrics, 10)
        metrics, main = expected()
        served_at = time.monotonic()
        found = await until(
            read,
            lambda f: (
                addresses(f, "http-sd") == metrics
                and sorted(
                    f"{t['__meta_eureka_app_instance_ip_addr']}:{t['__meta_eureka_app_instance_port']}"
                    for t in f.get("eureka-sd", [])
                )
                == main
            ),
            2 * REFRESH_S + 5,
        )
        assert addresses(found, "http-sd") == metrics
        assert time.monotonic() - served_at <= 2 * REFRESH_S + 5  # two refreshes, and Prometheus' own scheduling

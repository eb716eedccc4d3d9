"""Hostile or odd data from AWS and from files, through moto over HTTP and the daemon's sockets:
a bad record is skipped and counted, never freezes its partition; every frontend publishes one
canonical address; no name in the zone is overwritten silently; text XML cannot carry never
reaches a client; a damaged snapshot file is never fatal."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from aiobotocore.session import AioSession
from structlog.testing import capture_logs

from discobridge.app import Daemon
from discobridge.fakeaws.estate import Estate
from discobridge.fakeaws.server import FakeAws
from discobridge.model import PartitionResult
from discobridge.snapshot_file import Saved, encode
from tests.conftest import daemon_get, make_config
from tests.helpers import PROD, dns_records, endpoint

ZONE = "disco.test"


@asynccontextmanager
async def serving(url: str, session: AioSession, **tables: Any) -> AsyncIterator[Daemon]:
    config = make_config(url, cloudmap={"namespaces": ["corp.local"], "poll_interval_s": 0.05}, **tables)
    async with Daemon(config, session=session, aws_options={"max_attempts": 1}) as daemon:
        await daemon.serve()
        assert await daemon.store.wait_for(0, timeout=10) is not None
        yield daemon


records = dns_records


def attrs(ip: str, port: str = "8080", **more: str) -> dict[str, str]:
    return {"AWS_INSTANCE_IPV4": ip, "AWS_INSTANCE_PORT": port, "AVAILABILITY_ZONE": "us-east-1a", **more}


async def test_a_bad_cloud_map_record_is_skipped_and_counted_and_the_namespace_keeps_updating(
    fake_aws: FakeAws, estate: Estate, aio_session: AioSession
) -> None:
    namespace = estate.namespace("corp.local")
    estate.cloudmap_instance(namespace, "billing", "good", attrs("10.0.9.1"))
    estate.cloudmap_instance(namespace, "billing", "evil", attrs("1.2.3.4<script>"))
    estate.cloudmap_instance(namespace, "billing", "octal", attrs("010.000.000.010", "0080"))
    estate.cloudmap_instance(namespace, "billing", "spaced", attrs("10.0.0.6 "))
    async with serving(fake_aws.url, aio_session) as daemon:
        assert await records(daemon, "billing", "TXT") == ['"10.0.9.1:8080"']
        sample = daemon.metrics.registry.get_sample_value
        assert sample("discobridge_source_skipped_records_total", {"source": "cloudmap", "reason": "bad_ip"}) >= 3
        estate.cloudmap_instance(namespace, "billing", "later", attrs("10.0.9.2"))
        assert await daemon.store.wait_until(
            lambda: len(daemon.store.current.services["billing"].endpoints) == 2,  # type: ignore[union-attr]
            10,
        )  # the namespace was not frozen by the bad records
        assert (await daemon_get(daemon, "/healthz"))[0] == 200


async def test_every_frontend_publishes_the_one_canonical_address(
    fake_aws: FakeAws, estate: Estate, aio_session: AioSession
) -> None:
    namespace = estate.namespace("corp.local")
    six = {"AWS_INSTANCE_IPV6": "FD00:0:0::0A", "AWS_INSTANCE_PORT": "0443", "AVAILABILITY_ZONE": "us-east-1b"}
    estate.cloudmap_instance(namespace, "ledger", "v6", six)
    async with serving(fake_aws.url, aio_session) as daemon:
        assert await records(daemon, "ledger", "AAAA") == ["fd00::a"]
        assert await records(daemon, "ledger", "TXT") == ['"[fd00::a]:443"']
        _, body = await daemon_get(daemon, "/v1/services/ledger")
        assert [(e["host"], e["port"]) for e in json.loads(body)["endpoints"]] == [("fd00::a", 443)]
        _, body = await daemon_get(daemon, "/eureka/apps/LEDGER", Accept="application/json")
        (instance,) = json.loads(body)["application"]["instance"]
        assert (instance["ipAddr"], instance["hostName"], instance["port"]["$"]) == ("fd00::a", "fd00::a", 443)
        assert instance["homePageUrl"].startswith("http://[fd00::a]:443/")


async def test_cloud_map_never_claims_a_tasks_name(fake_aws: FakeAws, estate: Estate, aio_session: AioSession) -> None:
    (task,) = estate.web_service("prod", "orders")
    task_id = task.rsplit("/", 1)[-1]
    namespace = estate.namespace("corp.local")
    # A Cloud Map service named like the task, claiming the cluster "orders": task-id.orders.Z.
    estate.cloudmap_instance(namespace, task_id, "hijack", attrs("10.66.66.66", ECS_CLUSTER_NAME="orders"))
    async with serving(fake_aws.url, aio_session) as daemon:
        (task_address,) = await records(daemon, f"{task_id}.orders", "A")
        assert task_address != "10.66.66.66"
        assert await records(daemon, task_id, "A") == ["10.66.66.66"]  # served under its own name only
        assert await records(daemon, f"{task_id}.orders.{ZONE}", "A") == []  # and never as qualified


async def test_clusters_that_normalise_to_one_label_are_a_named_warning_with_one_winner(
    fake_aws: FakeAws, estate: Estate, aio_session: AioSession
) -> None:
    first = estate.web_service("Prod", "orders")
    estate.web_service("prod", "orders")
    with capture_logs() as logs:
        async with serving(fake_aws.url, aio_session) as daemon:
            snapshot = daemon.store.current
            assert snapshot is not None
            ips = {e.cluster: e.host_ip for e in snapshot.services["orders"].endpoints}
            assert await records(daemon, "orders.prod", "A") == [ips["Prod"]]  # "Prod" sorts first
            _, body = await daemon_get(daemon, "/healthz")
            warnings = json.loads(body)["warnings"]
            (warning,) = [w for w in warnings if "DNS label" in w]
            assert "cluster 'Prod' and cluster 'prod' share the DNS label 'prod'" in warning
            assert any("spans clusters Prod, prod" in w for w in warnings)  # and one Eureka app: said too
    logged = [e["warning"] for e in logs if e["event"] == "snapshot_warning"]
    assert first and sorted(logged) == sorted(warnings)  # each once


async def test_text_xml_cannot_carry_never_reaches_a_client(
    fake_aws: FakeAws, estate: Estate, aio_session: AioSession
) -> None:
    namespace = estate.namespace("corp.local")
    estate.cloudmap_instance(namespace, "billing", "b-1", attrs("10.0.9.1", AVAILABILITY_ZONE="us-east-1\x0ba"))
    estate.cloudmap_instance(namespace, "billing", "b-2", attrs("10.0.9.2", ECS_CLUSTER_NAME="prod\ud800"))
    async with serving(fake_aws.url, aio_session) as daemon:
        status, body = await daemon_get(daemon, "/eureka/apps", **{"Accept-Encoding": "identity"})
        assert status == 200
        registry = ET.fromstring(body)  # parses: nothing XML 1.0 cannot carry is in it
        assert {z.text for z in registry.iter("zone")} == {"us-east-1\ufffda", "us-east-1a"}
        assert {c.text for c in registry.iter("ecs-cluster")} == {"prod\ufffd"}


def damaged_files() -> list[tuple[str, bytes]]:
    good = json.loads(encode(Saved({PROD: PartitionResult((endpoint("orders", 1),), 0.0)})))

    def with_endpoint(**fields: Any) -> bytes:
        document = json.loads(json.dumps(good))
        document["partitions"][0]["endpoints"][0].update(fields)
        return json.dumps(document).encode()

    return [
        ("a-list", b"[]"),
        ("old-format", b'{"format":1,"sources":[]}'),
        ("port-huge", with_endpoint(host_port=1e400).replace(b"Infinity", b"1e400")),
        ("port-range", with_endpoint(host_port=70000)),
        ("bad-ip", with_endpoint(host_ip="1.2.3.4<script>")),
        ("nested", b"[" * 100_000 + b"]" * 100_000),
        ("not-utf8", b"\xff\xfe garbage"),
    ]


@pytest.mark.parametrize(("content",), [(c,) for _, c in damaged_files()], ids=[n for n, _ in damaged_files()])
async def test_a_damaged_snapshot_file_is_logged_and_ignored_never_fatal(
    fake_aws: FakeAws, estate: Estate, aio_session: AioSession, tmp_path: Path, content: bytes
) -> None:
    estate.web_service("prod", "orders")
    path = tmp_path / "snapshot.json"
    path.write_bytes(content)
    config = make_config(fake_aws.url, snapshot={"path": str(path)})
    with capture_logs() as logs:
        async with Daemon(config, session=aio_session, aws_options={"max_attempts": 1}) as daemon:
            await daemon.serve()
            assert daemon.store.current is None  # nothing restored from it
            assert await daemon.store.wait_for(0, timeout=10) is not None  # the live poll serves
    assert any(e["event"] in ("snapshot_file_unreadable", "snapshot_file_records_skipped") for e in logs)

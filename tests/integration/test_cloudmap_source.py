"""The real Cloud Map source against moto's server over HTTP, alone and merged with ECS."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import dns.asyncquery
import dns.message
import pytest
from aiobotocore.session import AioSession
from structlog.testing import capture_logs

from discobridge.app import Daemon
from discobridge.aws import AwsClients
from discobridge.config import parse_config
from discobridge.fakeaws.estate import Container, Estate
from discobridge.fakeaws.server import FakeAws
from discobridge.metrics import Metrics
from discobridge.model import Endpoint, Health
from discobridge.sources.cloudmap.source import CloudMapSource
from tests.conftest import daemon_get, make_config
from tests.helpers import LOCAL_AWS, partition

CORP, TYPO = partition("corp.local", source="cloudmap"), partition("typo.local", source="cloudmap")
TYPO_MISSING = "Cloud Map namespace 'typo.local' does not exist in local/us-east-1"


def attrs(ip: str, port: str | None = "8080", az: str = "us-east-1a") -> dict[str, str]:
    found = {"AWS_INSTANCE_IPV4": ip, "AVAILABILITY_ZONE": az}
    if port is not None:
        found["AWS_INSTANCE_PORT"] = port
    return found


@pytest.fixture
async def aws(fake_aws: FakeAws, aio_session: AioSession) -> AsyncIterator[tuple[AwsClients, Metrics]]:
    config = parse_config(f'[aws]\nregion = "us-east-1"\nendpoint_url = "{fake_aws.url}"\n[dns]\nzone = "d.t"\n', "t")
    metrics = Metrics.create()
    async with AwsClients(config=config.aws, metrics=metrics, session=aio_session, max_attempts=1) as clients:
        yield clients, metrics


def by_address(endpoints: tuple[Endpoint, ...]) -> dict[str, tuple[str, Health, str]]:
    return {e.address: (e.service, e.health, e.az) for e in endpoints}


async def test_services_health_skips_and_pages(estate: Estate, aws: tuple[AwsClients, Metrics]) -> None:
    clients, metrics = aws
    namespace = estate.namespace("corp.local")
    estate.namespace("other.local")  # never asked for: its services must not appear
    estate.cloudmap_instance(namespace, "billing", "b-1", attrs("10.0.9.1", az="us-east-1a"))
    estate.cloudmap_instance(namespace, "billing", "b-2", attrs("10.0.9.2", "8081", az="us-east-1b"))
    estate.cloudmap_instance(namespace, "billing", "b-3", attrs("10.0.9.3", port=None))  # no port: skipped
    checked = estate.cloudmap_service(namespace, "Legacy_Ledger", custom_health=True)
    estate.cloudmap_instance(namespace, "Legacy_Ledger", "l-1", attrs("10.0.9.4", "9000"))
    estate.cloudmap_instance(namespace, "Legacy_Ledger", "l-2", attrs("10.0.9.5", "9000"))
    estate.cloudmap_health(checked, "l-2", "UNHEALTHY")
    for n in range(3):  # more services than one page of 2
        estate.cloudmap_instance(namespace, f"svc-{n}", f"s-{n}", attrs(f"10.0.8.{n}", "7000"))

    source = CloudMapSource(
        aws=clients, account="local", region="us-east-1", namespaces=["corp.local"], metrics=metrics, page_size=2
    )
    (corp,) = source.known()
    refreshed = await corp.refresh()
    found = by_address(refreshed.endpoints)
    assert found == {
        "10.0.9.1:8080": ("billing", Health.HEALTHY, "us-east-1a"),
        "10.0.9.2:8081": ("billing", Health.HEALTHY, "us-east-1b"),
        "10.0.9.4:9000": ("legacy-ledger", Health.HEALTHY, "us-east-1a"),
        "10.0.9.5:9000": ("legacy-ledger", Health.UNHEALTHY, "us-east-1a"),
        "10.0.8.0:7000": ("svc-0", Health.HEALTHY, "us-east-1a"),
        "10.0.8.1:7000": ("svc-1", Health.HEALTHY, "us-east-1a"),
        "10.0.8.2:7000": ("svc-2", Health.HEALTHY, "us-east-1a"),
    }
    assert refreshed.warnings == ()
    # DiscoverInstances answers in random order; the partition's order is stable, so an
    # unchanged namespace is an equal result and no new snapshot.
    for _ in range(3):
        assert (await corp.refresh()).endpoints == refreshed.endpoints
    sample = metrics.registry.get_sample_value
    assert sample("discobridge_source_skipped_records_total", {"source": "cloudmap", "reason": "no_port"}) == 4
    # Per refresh (4 of them): 5 services in pages of 2 take 3 ListServices calls; one
    # DiscoverInstances per service.
    assert sample("discobridge_aws_calls_total", {**LOCAL_AWS, "operation": "ListServices", "outcome": "ok"}) == 3 * 4
    assert (
        sample("discobridge_aws_calls_total", {**LOCAL_AWS, "operation": "DiscoverInstances", "outcome": "ok"}) == 5 * 4
    )


async def test_missing_namespace_is_reported_not_fatal(estate: Estate, aws: tuple[AwsClients, Metrics]) -> None:
    clients, metrics = aws
    namespace = estate.namespace("corp.local")
    estate.cloudmap_instance(namespace, "billing", "b-1", attrs("10.0.9.1"))
    source = CloudMapSource(
        aws=clients, account="local", region="us-east-1", namespaces=["corp.local", "typo.local"], metrics=metrics
    )
    corp, typo = source.known()
    with capture_logs() as logs:
        assert list(by_address((await corp.refresh()).endpoints)) == ["10.0.9.1:8080"]
        assert await typo.refresh() == await typo.refresh()
    assert (await typo.refresh()).warnings == (TYPO_MISSING,)
    errors = [e for e in logs if e["event"] == "cloudmap_namespace_not_found"]
    assert len(errors) == 1 and errors[0]["log_level"] == "error"  # once, not once per poll


@pytest.fixture
async def daemon(fake_aws: FakeAws, estate: Estate, aio_session: AioSession) -> AsyncIterator[Daemon]:
    estate.cluster("prod")
    definition = estate.task_definition("billing", Container("web", ports=(8080,)))
    (task,) = estate.service("prod", "billing", definition, estate.hosts("prod", 1))
    described = estate.ecs.describe_tasks(cluster="prod", tasks=[task])["tasks"][0]
    port = str(described["containers"][0]["networkBindings"][0]["hostPort"])
    ci = estate.ecs.describe_container_instances(cluster="prod", containerInstances=[described["containerInstanceArn"]])
    instance_id = ci["containerInstances"][0]["ec2InstanceId"]
    ip = estate.ec2.describe_instances(InstanceIds=[instance_id])["Reservations"][0]["Instances"][0]["PrivateIpAddress"]
    namespace = estate.namespace("corp.local")
    # ECS registers the same task in Cloud Map (SRV only); another team adds a non-ECS instance.
    estate.cloudmap_instance(namespace, "billing", task.rsplit("/", 1)[-1], attrs(ip, port))
    estate.cloudmap_instance(namespace, "billing", "vm-1", attrs("10.0.9.9", "7000", az="us-east-1b"))
    config = make_config(fake_aws.url, cloudmap={"namespaces": ["corp.local", "typo.local"], "poll_interval_s": 0.05})
    async with Daemon(config, session=aio_session, aws_options={"max_attempts": 1}) as running:
        await running.serve()
        # The first snapshot waits for every partition: ECS's cluster and both namespaces.
        assert await running.store.wait_for(0, timeout=10) is not None
        yield running


async def test_merge_with_ecs_dedupes_and_failures_keep_the_last_good_result(daemon: Daemon, fake_aws: FakeAws) -> None:
    snapshot = daemon.store.current
    assert snapshot is not None
    billing = snapshot.services["billing"].endpoints
    assert len(billing) == 2  # the ECS task once (ECS wins on details), plus the VM
    sources = {e.source for e in billing}
    assert sources == {"ecs", "cloudmap"}
    ecs = next(e for e in billing if e.source == "ecs")
    assert ecs.cluster == "prod" and ecs.task_arn

    assert daemon.http.address is not None
    url = f"http://127.0.0.1:{daemon.http.address.port}/healthz"
    async with aiohttp.ClientSession() as client, client.get(url) as response:
        health = await response.json()
    assert response.status == 200  # the data is fresh; the missing namespace is a warning
    assert health["partitions"][TYPO.id]["warnings"] == [TYPO_MISSING]

    fake_aws.faults.fail("DiscoverInstances", code="RequestLimitExceeded", status=400)

    def attempts() -> Any:
        return daemon.store.partitions[CORP].attempts

    assert await daemon.store.wait_until(lambda: attempts().consecutive_failures >= 2, timeout=10)
    current = daemon.store.current  # the last good Cloud Map result is still served
    assert current is not None and current.services["billing"] == snapshot.services["billing"]
    assert str(attempts().last_error).startswith("cloudmap namespace corp.local in local/us-east-1: ")
    assert "RequestLimitExceeded" in str(attempts().last_error)


async def test_the_merged_estate_through_dns_http_and_eureka(daemon: Daemon) -> None:
    snapshot = daemon.store.current
    assert snapshot is not None
    expected = sorted(e.address for e in snapshot.services["billing"].endpoints)
    port = daemon.dns.addresses[0].port
    zone = daemon.config.dns.zone

    async def ask(rdtype: str) -> list[str]:
        query = dns.message.make_query(f"billing.{zone}", rdtype)
        answer = await dns.asyncquery.udp(query, "127.0.0.1", port=port, timeout=2)
        return [item.to_text() for rrset in answer.answer for item in rrset]

    assert sorted(await ask("A")) == sorted({a.split(":")[0] for a in expected})
    assert sorted(t.strip('"') for t in await ask("TXT")) == expected
    assert sorted(s.split()[2] for s in await ask("SRV")) == sorted(a.split(":")[1] for a in expected)

    document = json.loads((await daemon_get(daemon, "/v1/services/billing"))[1])
    eureka = json.loads((await daemon_get(daemon, "/eureka/apps/BILLING", Accept="application/json"))[1])
    assert sorted(f"{e['host']}:{e['port']}" for e in document["endpoints"]) == expected
    assert {e["source"] for e in document["endpoints"]} == {"ecs", "cloudmap"}
    assert sorted(i["instanceId"] for i in eureka["application"]["instance"]) == expected

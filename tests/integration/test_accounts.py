"""Many AWS accounts and regions in one discobridge, through moto over HTTP with real multi-account
state (moto keeps one backend per account and maps AssumeRole credentials to the role's account):
one estate across them in DNS, /v1 and Eureka at once, overlapping addresses kept apart, each
account x region failing, renewing its credentials and being throttled alone."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from datetime import timedelta
from typing import Any

import pytest
from aiobotocore.session import AioSession
from py_eureka_client import eureka_basic

from discobridge import aws_roles
from discobridge.app import Daemon
from discobridge.aws_budget import AWS_BUCKETS
from discobridge.fakeaws.estate import Estate
from discobridge.fakeaws.server import FakeAws
from tests.conftest import daemon_get, make_config, running
from tests.helpers import ShiftedUtc, counted, dns_records, reconciled_since_events

PROD_ID, STAGING_ID, QA_ID = "111111111111", "222222222222", "333333333333"
EXTERNAL_ID = "discobridge-staging"


def role(account_id: str) -> str:
    return f"arn:aws:iam::{account_id}:role/discobridge-read"


PROD = {"name": "prod", "role_arn": role(PROD_ID), "regions": ["us-east-1", "eu-west-1"]}
STAGING = {"name": "staging", "role_arn": role(STAGING_ID), "external_id": EXTERNAL_ID}
FAR = 3600.0


@pytest.fixture
def estates(fake_aws: FakeAws) -> dict[str, Estate]:
    """One handle per account and region, each its own state in moto."""
    return {
        "local": Estate(fake_aws.url),
        "prod/us-east-1": Estate(fake_aws.url, "us-east-1", PROD_ID),
        "prod/eu-west-1": Estate(fake_aws.url, "eu-west-1", PROD_ID),
        "staging/us-east-1": Estate(fake_aws.url, "us-east-1", STAGING_ID),
    }


def orders_everywhere(estates: dict[str, Estate]) -> dict[str, str]:
    """Service orders on one host in each account and region, in a cluster of each's own name
    ("main" in every member account: the same cluster name in two regions and two accounts)."""
    arns = {}
    for where, estate in estates.items():
        (arns[where],) = estate.web_service("shop" if where == "local" else "main", "orders")
    return arns


def served(daemon: Daemon, service: str = "orders") -> list[Any]:
    snapshot = daemon.store.current
    found = snapshot.services.get(service) if snapshot else None
    return list(found.endpoints) if found else []


def where(endpoints: list[Any]) -> Counter[str]:
    return Counter(f"{e.account}/{e.region}" for e in endpoints)


def assume_role_calls(daemon: Daemon, outcome: str = "ok") -> float:
    return counted(daemon.metrics.registry, "discobridge_aws_calls_total", operation="AssumeRole", outcome=outcome)


def failed_refreshes(daemon: Daemon, account: str) -> float:
    return sum(
        status.attempts.consecutive_failures
        for key, status in daemon.store.partitions.items()
        if key.account == account
    )


EVERYWHERE = Counter({"local/us-east-1": 1, "prod/us-east-1": 1, "prod/eu-west-1": 1, "staging/us-east-1": 1})


@asynccontextmanager
async def reading_everywhere(fake_aws: FakeAws, aio_session: AioSession, **tables: Any) -> AsyncIterator[Daemon]:
    """A daemon reading the local account, prod and staging, once it serves orders from each."""
    async with running(fake_aws.url, aio_session, accounts=[PROD, STAGING], **tables) as daemon:
        assert await daemon.store.wait_until(lambda: where(served(daemon)) == EVERYWHERE, 15)
        yield daemon


async def refreshes_go_on(daemon: Daemon, count: int, timeout: float) -> bool:
    """Whether `count` more partition refreshes are done within `timeout` seconds."""
    registry = daemon.metrics.registry
    before = counted(registry, "discobridge_source_refreshes_total")
    return await daemon.store.wait_until(
        lambda: counted(registry, "discobridge_source_refreshes_total") > before + count, timeout
    )


async def test_three_accounts_in_two_regions_are_one_estate_in_dns_v1_and_eureka_at_once(
    fake_aws: FakeAws, estates: dict[str, Estate], aio_session: AioSession
) -> None:
    orders_everywhere(estates)
    async with reading_everywhere(fake_aws, aio_session) as daemon:
        # One AssumeRole per member account (prod's two regions share its credentials), not per call.
        assert assume_role_calls(daemon) == 2

        # DNS: one service; narrowed by account, by region, by cluster.
        assert len(await dns_records(daemon, "_orders._tcp", "SRV")) == 4
        srv = {name: len(await dns_records(daemon, f"orders.{name}", "SRV")) for name in
               ("prod", "staging", "local", "eu-west-1", "us-east-1", "main", "shop")}  # fmt: skip
        assert srv == {"prod": 2, "staging": 1, "local": 1, "eu-west-1": 1, "us-east-1": 3, "main": 3, "shop": 1}

        # /v1: every endpoint names its account and region; the query narrows by any of them.
        status, body = await daemon_get(daemon, "/v1/services/orders")
        assert status == 200
        everywhere = json.loads(body)["endpoints"]
        assert Counter(f"{e['account']}/{e['region']}" for e in everywhere) == EVERYWHERE
        status, body = await daemon_get(daemon, "/v1/services/orders?account=prod&region=eu-west-1")
        (only,) = json.loads(body)["endpoints"]
        assert (only["account"], only["region"], only["az"]) == ("prod", "eu-west-1", "eu-west-1a")
        status, body = await daemon_get(daemon, "/v1/resolve/orders?account=staging")
        assert status == 200 and body.decode().strip() in {
            f"{e['host']}:{e['port']}" for e in everywhere if e["account"] == "staging"
        }

        # Eureka, as py-eureka-client decodes it: one application, each instance's account and
        # region beside its zone, which stays the AZ (zone preference works across regions).
        assert daemon.http.address is not None
        apps = await eureka_basic.get_applications(f"http://127.0.0.1:{daemon.http.address.port}/eureka/")
        instances = apps.get_application("ORDERS").instances
        seen = Counter(
            (i.metadata["aws-account"], i.metadata["aws-region"], i.zone == f"{i.metadata['aws-region']}a")
            for i in instances
        )
        assert seen == Counter(
            {("local", "us-east-1", True): 1, ("prod", "us-east-1", True): 1, ("prod", "eu-west-1", True): 1,
             ("staging", "us-east-1", True): 1}
        )  # fmt: skip

        # Prometheus discovery and the status page say where each endpoint is too.
        _, body = await daemon_get(daemon, "/v1/prometheus/targets")
        labelled = Counter(
            f"{g['labels']['__meta_discobridge_account']}/{g['labels']['__meta_discobridge_region']}"
            for g in json.loads(body)
            for _ in g["targets"]
        )
        assert labelled == EVERYWHERE
        _, page = await daemon_get(daemon, "/")
        assert all(place.encode() in page for place in EVERYWHERE)


async def test_one_address_in_two_accounts_is_two_endpoints_everywhere(
    fake_aws: FakeAws, estates: dict[str, Estate], aio_session: AioSession
) -> None:
    attributes = {"AWS_INSTANCE_IPV4": "10.0.9.1", "AWS_INSTANCE_PORT": "8080", "AVAILABILITY_ZONE": "us-east-1a"}
    for name in ("prod/us-east-1", "staging/us-east-1"):  # overlapping VPC CIDRs, the same port
        estate = estates[name]
        estate.cloudmap_instance(estate.namespace("corp.local"), "billing", "b-1", attributes)
    accounts = [
        {**PROD, "regions": ["us-east-1"], "namespaces": ["corp.local"]},
        {**STAGING, "namespaces": ["corp.local"]},
    ]
    async with running(fake_aws.url, aio_session, accounts=accounts, cloudmap={"poll_interval_s": 0.05}) as daemon:
        assert await daemon.store.wait_until(lambda: len(served(daemon, "billing")) == 2, 15)
        assert where(served(daemon, "billing")) == Counter({"prod/us-east-1": 1, "staging/us-east-1": 1})

        _, body = await daemon_get(daemon, "/v1/services/billing")
        documents = json.loads(body)["endpoints"]
        assert sorted((f"{e['host']}:{e['port']}", e["account"]) for e in documents) == [
            ("10.0.9.1:8080", "prod"),
            ("10.0.9.1:8080", "staging"),
        ]
        assert daemon.http.address is not None
        apps = await eureka_basic.get_applications(f"http://127.0.0.1:{daemon.http.address.port}/eureka/")
        ids = sorted(i.instanceId for i in apps.get_application("BILLING").instances)
        assert ids == ["10.0.9.1:8080@prod.us-east-1", "10.0.9.1:8080@staging.us-east-1"]

        records = await dns_records(daemon, "_billing._tcp", "SRV")
        targets = sorted(r.split()[-1] for r in records)
        assert len(targets) == 2 and targets[0] != targets[1]  # two records, each its own target
        for target in targets:
            assert await dns_records(daemon, target.removesuffix(f".{daemon.config.dns.zone}."), "A") == ["10.0.9.1"]
        assert len(await dns_records(daemon, "billing.staging", "SRV")) == 1


async def test_a_denied_role_fails_its_account_alone_keeping_its_data_and_naming_it(
    fake_aws: FakeAws, estates: dict[str, Estate], aio_session: AioSession, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(aws_roles, "RETRY_S", 0.5)  # how soon a denied role is tried again (30 s)
    orders_everywhere(estates)
    clock = ShiftedUtc()
    health = {"max_staleness_s": 2.0}
    async with reading_everywhere(fake_aws, aio_session, utc_now=clock, health=health) as daemon:
        # The member account revokes its trust; nothing notices until the credentials expire.
        fake_aws.faults.fail(
            "AssumeRole", code="AccessDenied", status=403, message="not authorized to assume", match=STAGING_ID
        )
        clock.shift += timedelta(minutes=65)
        assert await daemon.store.wait_until(lambda: failed_refreshes(daemon, "staging") >= 2, 10)

        # Every other account keeps updating: a new task in prod is served.
        prod = estates["prod/eu-west-1"]
        (host,) = prod.hosts("main", 1)
        (definition,) = prod.ecs.list_task_definitions()["taskDefinitionArns"]
        prod.place("main", definition, [host], group="service:orders")
        assert await daemon.store.wait_until(lambda: where(served(daemon))["prod/eu-west-1"] == 2, 10)
        assert failed_refreshes(daemon, "prod") == failed_refreshes(daemon, "local") == 0

        # The denied account's last good data is still served, and it is named as failing.
        assert where(served(daemon))["staging/us-east-1"] == 1
        assert len(await dns_records(daemon, "orders.staging", "SRV")) == 1
        status, body = await daemon_get(daemon, "/healthz")
        health_report = json.loads(body)
        staging = health_report["partitions"]["ecs/staging/us-east-1/main"]
        assert "AssumeRole failed: AccessDenied" in staging["last_error"] and role(STAGING_ID) in staging["last_error"]
        assert staging["endpoints"] == 1
        assert await daemon.store.wait_until(lambda: _unhealthy_for(daemon) == ["staging"], 10)
        status, body = await daemon_get(daemon, "/healthz")
        assert status == 503 and "ecs cluster main in staging/us-east-1" in json.loads(body)["reason"]
        _, page = await daemon_get(daemon, "/")
        assert b"staging/us-east-1" in page and b"AccessDenied" in page
        denied = assume_role_calls(daemon, "AccessDenied")
        assert denied <= 2 + 10 / aws_roles.RETRY_S  # tried again at most every RETRY_S, not per call

        # The trust is restored: the account recovers by itself.
        fake_aws.faults.clear()
        assert await daemon.store.wait_until(lambda: _verdict(daemon)[0] == 200, 10)
        assert failed_refreshes(daemon, "staging") == 0
        assert (await daemon_get(daemon, "/healthz"))[0] == 200


def _verdict(daemon: Daemon) -> tuple[int, str]:
    from discobridge.frontends.health import judge  # noqa: PLC0415

    verdict = judge(daemon.store, max_staleness_s=daemon.config.health.max_staleness_s, shutting_down=False)
    return (200 if verdict.healthy else 503), verdict.reason


def _unhealthy_for(daemon: Daemon) -> list[str]:
    """The accounts /healthz would fail for: their partitions' data over the staleness limit."""
    limit = daemon.config.health.max_staleness_s
    return sorted({k.account for k in daemon.store.partitions if (daemon.store.age_of(k) or 0) > limit})


async def test_credentials_expiring_during_a_run_are_renewed_once_with_no_failed_poll(
    fake_aws: FakeAws, estates: dict[str, Estate], aio_session: AioSession, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(aws_roles, "RETRY_S", 0.5)
    orders_everywhere(estates)
    clock = ShiftedUtc()
    async with reading_everywhere(fake_aws, aio_session, utc_now=clock) as daemon:
        assert assume_role_calls(daemon) == 2

        # 50 minutes on, the hour's credentials have 10 left: due for renewal, and STS is down.
        fake_aws.faults.fail("AssumeRole", code="ServiceUnavailable", status=503, message="try again")
        clock.shift += timedelta(minutes=50)
        assert await daemon.store.wait_until(lambda: assume_role_calls(daemon, "ServiceUnavailable") >= 4, 10)
        assert await refreshes_go_on(daemon, 20, 10)  # the credentials in hand are still good

        # STS is back: renewed once per account, then used for every call of many more refreshes.
        fake_aws.faults.clear()
        assert await daemon.store.wait_until(lambda: assume_role_calls(daemon) == 4, 10)
        assert await refreshes_go_on(daemon, 40, 15)
        assert assume_role_calls(daemon) == 4
        assert counted(daemon.metrics.registry, "discobridge_source_refreshes_total", outcome="failed") == 0


async def test_a_throttled_account_and_region_slows_its_own_budget_only(
    fake_aws: FakeAws, estates: dict[str, Estate], aio_session: AioSession
) -> None:
    orders_everywhere(estates)
    async with reading_everywhere(fake_aws, aio_session) as daemon:
        # AWS throttles prod in us-east-1 (its cluster's ARN is in each ListTasks it answers).
        fake_aws.faults.fail(
            "ListTasks", code="ThrottlingException", status=400, message="Rate exceeded", times=3,
            match=f"us-east-1:{PROD_ID}:cluster",
        )  # fmt: skip
        registry = daemon.metrics.registry
        assert await daemon.store.wait_until(
            lambda: counted(registry, "discobridge_aws_calls_total", account="prod", outcome="throttled") == 3, 10
        )
        rates = {
            (s.labels["account"], s.labels["region"]): s.value
            for family in registry.collect()
            for s in family.samples
            if s.name == "discobridge_aws_budget_calls_per_second" and s.labels["bucket"] == "ecs-cluster-resource-read"
        }
        full = AWS_BUCKETS["ecs-cluster-resource-read"].per_s  # tests take the whole rate
        assert rates.pop(("prod", "us-east-1")) < full
        assert rates == {("local", "us-east-1"): full, ("prod", "eu-west-1"): full, ("staging", "us-east-1"): full}
        throttled = {
            (s.labels["account"], s.labels["region"])
            for family in registry.collect()
            for s in family.samples
            if s.name == "discobridge_aws_calls_total" and s.labels["outcome"] == "throttled" and s.value
        }
        assert throttled == {("prod", "us-east-1")}


def calls_by_place(daemon: Daemon) -> dict[tuple[str, str], Counter[str]]:
    found: dict[tuple[str, str], Counter[str]] = {}
    for family in daemon.metrics.registry.collect():
        for s in family.samples:
            if s.name == "discobridge_aws_calls_total" and s.value:
                place = found.setdefault((s.labels["account"], s.labels["region"]), Counter())
                place[s.labels["operation"]] += int(s.value)
    return found


@pytest.fixture
def six_places(fake_aws: FakeAws) -> Iterator[list[tuple[str, str, Estate]]]:
    places = []
    for name, account_id in (("prod", PROD_ID), ("staging", STAGING_ID), ("qa", QA_ID)):
        for region in ("us-east-1", "eu-west-1"):
            places.append((name, region, Estate(fake_aws.url, region, account_id)))
    yield places


async def test_a_quiet_estate_of_three_accounts_in_two_regions_costs_six_single_account_daemons(
    fake_aws: FakeAws, six_places: list[tuple[str, str, Estate]], aio_session: AioSession
) -> None:
    """Each account x region costs, call for call, what a daemon of that account alone costs
    (its own estate of the same shape); the only call more is one AssumeRole per account."""
    for _, _, estate in six_places:
        estate.web_service("main", "orders", hosts=2)
    Estate(fake_aws.url).web_service("main", "orders", hosts=2)  # the local account's, the yardstick
    accounts = [
        {"name": name, "role_arn": role(account_id), "regions": ["us-east-1", "eu-west-1"]}
        for name, account_id in (("prod", PROD_ID), ("staging", STAGING_ID), ("qa", QA_ID))
    ]
    far = {"ecs": {"poll_interval_s": FAR, "health_refresh_s": FAR}}
    async with Daemon(make_config(fake_aws.url, **far), session=aio_session) as alone:
        for _ in range(4):  # a cold start, then three quiet polls
            assert await alone.refresh_all()
        yardstick = calls_by_place(alone)[("local", "us-east-1")]
    async with Daemon(make_config(fake_aws.url, accounts=accounts, **far), session=aio_session) as daemon:
        for _ in range(4):
            assert await daemon.refresh_all()
        costs = calls_by_place(daemon)
    assert costs.pop(("local", "us-east-1")) == yardstick + Counter({"AssumeRole": 3})
    assert costs == {(name, region): yardstick for name, region, _ in six_places}


async def test_events_of_every_account_reach_one_topic_and_change_their_own_partition_only(
    fake_aws: FakeAws, estates: dict[str, Estate], aio_session: AioSession
) -> None:
    tasks = orders_everywhere(estates)
    topic = estates["local"].events_topic()
    for name in ("prod/us-east-1", "prod/eu-west-1", "staging/us-east-1"):
        estates[name].forward_events(topic)  # each member account's rule, to the central bus
    # A configured cluster has its partition before any listing: the nudge when events come up finds it.
    polls = {"clusters": ["shop"], "poll_interval_s": FAR, "health_refresh_s": FAR}
    events = {"topic_arn": topic, "reconcile_s": FAR}
    async with reading_everywhere(fake_aws, aio_session, ecs=polls, events=events, events_wait_s=1) as daemon:
        assert await daemon.store.wait_until(lambda: daemon.events is not None and daemon.events.status.live_since, 10)
        # The local cluster's full poll after subscribing; the others are forwarded, so they poll
        # until their first event arrives.
        assert await daemon.store.wait_until(lambda: reconciled_since_events(daemon.ecs_sources[0]), 10)
        assert [s.events.live_since is not None for s in daemon.ecs_sources if s.events] == [True, False, False, False]
        # Cluster "main" of staging loses its task: only that partition changes, though prod has
        # a cluster "main" in the same region (the event's account id tells them apart).
        estates["staging/us-east-1"].stop("main", tasks["staging/us-east-1"])
        assert await daemon.store.wait_until(lambda: "staging/us-east-1" not in where(served(daemon)), 10)
        assert where(served(daemon)) == EVERYWHERE - Counter({"staging/us-east-1": 1})
        # Its first event shows its events are forwarded: staging now reconciles, prod still polls.
        assert [s.events.live_since is not None for s in daemon.ecs_sources if s.events] == [True, False, False, True]
        registry = daemon.metrics.registry
        assert counted(registry, "discobridge_events_received_total", outcome="applied") >= 1
        assert counted(registry, "discobridge_events_received_total", outcome="ignored") == 0


async def test_a_role_in_the_local_account_reads_its_other_region_and_events_still_reach_both(
    fake_aws: FakeAws, aio_session: AioSession
) -> None:
    home, away = Estate(fake_aws.url), Estate(fake_aws.url, "eu-west-1")  # one account, two regions
    (home_task,) = home.web_service("main", "orders")
    (away_task,) = away.web_service("main", "orders")
    topic = home.events_topic()
    away.forward_events(topic)
    local_eu = {"name": "local-eu", "role_arn": role(home.account_id), "regions": ["eu-west-1"]}
    polls = {"clusters": ["main"], "poll_interval_s": FAR, "health_refresh_s": FAR}
    events = {"topic_arn": topic, "reconcile_s": FAR}
    async with running(
        fake_aws.url, aio_session, accounts=[local_eu], ecs=polls, events=events, events_wait_s=1
    ) as daemon:
        both = Counter({"local/us-east-1": 1, "local-eu/eu-west-1": 1})
        assert await daemon.store.wait_until(lambda: where(served(daemon)) == both, 15)
        assert await daemon.store.wait_until(lambda: daemon.events is not None and daemon.events.status.live_since, 10)
        assert await daemon.store.wait_until(lambda: reconciled_since_events(daemon.ecs_sources[0]), 10)
        home.stop("main", home_task)  # the local account's own region: no role claims it there
        assert await daemon.store.wait_until(lambda: where(served(daemon)) == Counter({"local-eu/eu-west-1": 1}), 10)
        away.stop("main", away_task)
        assert await daemon.store.wait_until(lambda: not served(daemon), 10)


async def test_events_of_an_account_not_configured_are_ignored_even_for_a_cluster_of_the_same_name(
    fake_aws: FakeAws, aio_session: AioSession
) -> None:
    home, stranger = Estate(fake_aws.url), Estate(fake_aws.url, "us-east-1", QA_ID)
    (home_task,) = home.web_service("main", "orders")
    (stranger_task,) = stranger.web_service("main", "orders")
    topic = home.events_topic()
    stranger.forward_events(topic)  # a bus admitting an account no [[accounts]] entry reads
    polls = {"clusters": ["main"], "poll_interval_s": FAR, "health_refresh_s": FAR}
    events = {"topic_arn": topic, "reconcile_s": FAR}
    async with running(fake_aws.url, aio_session, ecs=polls, events=events, events_wait_s=1) as daemon:
        assert await daemon.store.wait_until(lambda: len(served(daemon)) == 1, 15)
        assert await daemon.store.wait_until(lambda: daemon.events is not None and daemon.events.status.live_since, 10)
        registry = daemon.metrics.registry
        assert await daemon.store.wait_until(lambda: reconciled_since_events(daemon.ecs_sources[0]), 10)
        stranger.stop("main", stranger_task)
        assert await daemon.store.wait_until(
            lambda: counted(registry, "discobridge_events_received_total", outcome="ignored") >= 1, 10
        )
        assert [e.task_arn for e in served(daemon)] == [home_task]  # the local "main" untouched
        home.stop("main", home_task)
        assert await daemon.store.wait_until(lambda: not served(daemon), 10)
        assert counted(registry, "discobridge_aws_calls_total", operation="GetCallerIdentity") == 1


async def test_a_role_denied_from_the_start_holds_back_the_first_snapshot_no_longer_than_startup_wait(
    fake_aws: FakeAws, estates: dict[str, Estate], aio_session: AioSession
) -> None:
    orders_everywhere(estates)
    fake_aws.faults.fail("AssumeRole", code="AccessDenied", status=403, message="not authorized", match=STAGING_ID)
    health = {"startup_wait_s": 0.5}
    async with running(fake_aws.url, aio_session, accounts=[PROD, STAGING], health=health) as daemon:
        assert await daemon.store.wait_until(lambda: daemon.store.current is not None, 15)
        assert where(served(daemon)) == EVERYWHERE - Counter({"staging/us-east-1": 1})
        status, body = await daemon_get(daemon, "/healthz")
        reason = json.loads(body)["reason"]
        assert status == 503 and "ecs/staging/us-east-1" in reason and "AssumeRole failed: AccessDenied" in reason
        assert "prod/" not in reason and "local/" not in reason  # the others are fine

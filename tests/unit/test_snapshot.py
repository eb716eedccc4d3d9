"""build_snapshot and SnapshotStore: merging, ordering, stable generations, partitions that fail
alone, the readiness rule for the first snapshot, and waiting."""

from __future__ import annotations

import asyncio

from structlog.testing import capture_logs

from discobridge.model import Health, PartitionResult
from discobridge.snapshot import build_snapshot
from discobridge.store import SnapshotStore
from tests.helpers import PROD, FakeClock, endpoint, make_store, partition, publish, renderers

STAGING = partition("staging")
NAMESPACE = partition("corp.local", source="cloudmap")


def test_build_groups_by_service_sorts_numerically_and_prefers_the_endpoint_with_a_task() -> None:
    cloudmap = (
        endpoint("orders", 1, host_ip="10.0.0.10", host_port=80, source="cloudmap", task_arn="", cluster=""),
        endpoint("billing", 2, host_ip="10.0.0.2", host_port=7000, source="cloudmap", task_arn=""),
    )
    ecs = (endpoint("orders", 3, host_ip="10.0.0.10", host_port=80), endpoint("orders", 4, host_ip="10.0.0.9"))
    results = {NAMESPACE: PartitionResult(cloudmap, 1.0), PROD: PartitionResult(ecs, 1.0)}
    snapshot = build_snapshot(results, generation=7, built_at=2.0, renderers=renderers())
    assert list(snapshot.services) == ["billing", "orders"]
    orders = snapshot.services["orders"].endpoints
    assert [(e.host_ip, e.host_port) for e in orders] == [("10.0.0.9", 32772), ("10.0.0.10", 80)]
    assert orders[1].source == "ecs" and orders[1].cluster == "prod"
    assert snapshot.generation == 7


def test_ipv6_endpoints_sort_after_ipv4_ones() -> None:
    mixed = (endpoint("a", 1, host_ip="fd00::1"), endpoint("a", 2, host_ip="10.0.0.2"))
    services = build_snapshot({PROD: PartitionResult(mixed, 0.0)}, 1, 0.0, renderers()).services
    assert [e.host_ip for e in services["a"].endpoints] == ["10.0.0.2", "fd00::1"]


def test_serving_fails_open_to_unhealthy_endpoints_but_never_to_draining_ones() -> None:
    estate = (
        endpoint("a", 1),
        endpoint("a", 2, health=Health.DRAINING),
        endpoint("b", 3, health=Health.UNHEALTHY),
        endpoint("b", 4, health=Health.DRAINING),
        endpoint("c", 5, health=Health.DRAINING),
    )
    services = build_snapshot({PROD: PartitionResult(estate, 0.0)}, 1, 0.0, renderers()).services
    assert [e.host_port for e in services["a"].serving] == [32769]
    assert [e.host_port for e in services["b"].serving] == [32771]
    assert services["c"].serving == ()


async def test_store_bumps_generation_only_on_change_and_keeps_data_on_failure() -> None:
    clock = FakeClock()
    store = make_store(clock=clock)
    assert store.current is None and store.generation == 0 and store.age_s() is None

    endpoints = (endpoint("orders", 1),)
    assert publish(store, endpoints) is True
    first = store.current
    assert first is not None and first.generation == 1

    clock.now += 5
    assert publish(store, endpoints) is False
    assert store.current is first and store.age_s() == 0.0

    clock.now += 30
    store.record_failure(PROD, "DescribeTasks failed: ThrottlingException")
    store.record_failure(PROD, "DescribeTasks failed: ThrottlingException")
    assert store.current is first
    assert store.age_s() == 30.0
    attempts = store.partitions[PROD].attempts
    assert attempts.consecutive_failures == 2 and attempts.last_error and "Throttling" in attempts.last_error

    assert publish(store, ()) is True
    assert store.generation == 2 and store.partitions[PROD].attempts.consecutive_failures == 0


async def test_wait_for_returns_on_publish_and_none_on_timeout() -> None:
    store = make_store()
    assert await store.wait_for(0, timeout=0.01) is None

    waiter = asyncio.create_task(store.wait_for(0, timeout=5))
    await asyncio.sleep(0)  # let the waiter start waiting before the publish
    publish(store, (endpoint("a", 1),))
    snapshot = await waiter
    assert snapshot is not None and snapshot.generation == 1
    assert await store.wait_for(0, timeout=0.01) is snapshot  # already newer: returns at once


async def test_the_same_endpoints_as_new_objects_are_no_change() -> None:
    store = make_store()
    assert publish(store, (endpoint("a", 1), endpoint("a", 2), endpoint("b", 3))) is True
    again = (endpoint("a", 1), endpoint("a", 2), endpoint("b", 3))
    assert await store.submit(PROD, PartitionResult(again, 1.0)) is True
    assert store.generation == 1


async def test_the_first_snapshot_waits_for_every_partition_then_each_updates_alone() -> None:
    store = make_store(keys=(PROD, STAGING))
    assert await store.submit(PROD, PartitionResult((endpoint("orders", 1),), store.now())) is True
    assert store.current is None  # staging has no result yet: nothing partial is served
    assert store.pending() == ["ecs cluster staging in local/us-east-1: first refresh in progress"]
    assert await store.submit(STAGING, PartitionResult((endpoint("orders", 2, cluster="staging"),), store.now()))
    assert store.current is not None and len(store.current.services["orders"].endpoints) == 2
    store.record_failure(STAGING, "ecs cluster staging: AccessDeniedException")
    assert await store.submit(PROD, PartitionResult((endpoint("orders", 1), endpoint("orders", 3)), store.now()))
    assert len(store.current.services["orders"].endpoints) == 3  # staging's last good one kept
    await store.close()


async def test_a_partition_failing_past_startup_wait_no_longer_holds_back_the_others() -> None:
    clock = FakeClock()
    store = SnapshotStore(renderers=renderers(), scopes={PROD.scope: "ecs"}, startup_wait_s=60, clock=clock)
    store.listed(PROD.scope, [PROD, STAGING])
    store.record_failure(STAGING, "ecs cluster staging: AccessDeniedException")
    await store.submit(PROD, PartitionResult((endpoint("orders", 1),), clock.now))
    clock.now += 59
    store.record_failure(STAGING, "ecs cluster staging: AccessDeniedException")
    assert store.current is None and "AccessDeniedException" in store.pending()[0]
    clock.now += 1
    store.record_failure(STAGING, "ecs cluster staging: AccessDeniedException")
    assert await store.wait_for(0, timeout=5) is not None  # published without staging
    await store.close()


async def test_nothing_is_published_without_any_result_however_long_it_fails() -> None:
    clock = FakeClock()
    store = SnapshotStore(renderers=renderers(), scopes={PROD.scope: "ecs"}, startup_wait_s=1, clock=clock)
    store.listed(PROD.scope, [PROD, STAGING])
    for _ in range(3):
        clock.now += 100
        store.record_failure(PROD, "unreachable")
        store.record_failure(STAGING, "unreachable")
    assert store.current is None  # given up on, yet nothing to publish: still named
    assert [p.endswith("unreachable (failing too long: no longer waited for)") for p in store.pending()] == [True] * 2
    await store.close()


async def test_a_partition_making_progress_holds_back_the_first_snapshot_as_long_as_it_takes() -> None:
    clock = FakeClock()
    store = SnapshotStore(renderers=renderers(), scopes={PROD.scope: "ecs"}, startup_wait_s=1, clock=clock)
    store.listed(PROD.scope, [PROD, STAGING])
    await store.submit(PROD, PartitionResult((endpoint("orders", 1),), clock.now))
    for _ in range(10):
        clock.now += 100
        store.record_failure(STAGING, "throttled after describing 50 task definitions", progressed=True)
    assert store.current is None and len(store.pending()) == 1
    await store.close()


async def test_a_restored_result_counts_and_a_partition_no_longer_listed_is_dropped() -> None:
    store = make_store(keys=(PROD, STAGING), clock=FakeClock())
    store.restore(STAGING, PartitionResult((endpoint("orders", 2, cluster="staging"),), store.now() - 8))
    await store.submit(PROD, PartitionResult((endpoint("orders", 1),), store.now()))
    assert store.current is not None and len(store.current.services["orders"].endpoints) == 2
    assert store.age_s() == 8
    store.listed(PROD.scope, [PROD])  # staging was deleted
    assert await store.wait_until(lambda: len(store.current.services["orders"].endpoints) == 1, 5)  # type: ignore[union-attr]
    assert list(store.partitions) == [PROD]
    await store.close()


async def test_a_build_that_fails_puts_back_only_the_partition_that_breaks_it() -> None:
    from tests.unit.test_poller import BrokenDnsRenderer  # noqa: PLC0415 - one broken renderer for both files

    store = make_store(keys=(PROD, STAGING), dns=BrokenDnsRenderer(zone="disco.test", ttl_s=5))
    publish(store, (endpoint("orders", 1),))
    publish(store, (endpoint("orders", 2, cluster="staging"),), key=STAGING)
    generation = store.generation
    with capture_logs():
        poisoned = asyncio.create_task(store.submit(STAGING, PartitionResult((endpoint("poison", 3),), store.now())))
        fine = asyncio.create_task(store.submit(PROD, PartitionResult((endpoint("orders", 4),), store.now())))
        assert await asyncio.wait_for(asyncio.gather(poisoned, fine), 5) == [False, True]
    assert store.generation > generation and "poison" not in store.current.services  # type: ignore[union-attr]
    assert {e.host_port for e in store.current.services["orders"].endpoints} == {32770, 32772}  # type: ignore[union-attr]
    assert "snapshot build failed" in str(store.partitions[STAGING].attempts.last_error)
    await store.close()


async def test_a_submit_is_answered_when_a_partition_is_listed_while_it_waits_for_its_build() -> None:
    store = make_store()
    waiting = asyncio.create_task(store.submit(PROD, PartitionResult((endpoint("orders", 1),), store.now())))
    await asyncio.sleep(0)  # submit has queued its build
    store.listed(PROD.scope, [PROD, STAGING])  # a new cluster, no result yet: not ready any more
    assert await asyncio.wait_for(waiting, timeout=5) is True  # held for the first snapshot, not lost
    await store.close()


def test_a_service_spanning_clusters_is_one_named_warning_in_the_snapshot() -> None:
    store = make_store()
    publish(
        store, [endpoint("orders", 1, cluster="prod"), endpoint("orders", 2, cluster="staging"), endpoint("billing", 3)]
    )
    assert store.current is not None
    spanning = [w for w in store.current.warnings if "spans clusters" in w]
    assert spanning == [
        "service orders spans clusters prod, staging: one Eureka app ORDERS to Spring clients, so each gets the "
        "others' instances; scope [ecs] clusters per environment"
    ]


def test_endpoints_at_one_address_in_two_accounts_or_regions_stay_apart_while_one_account_dedupes() -> None:
    store = make_store()
    same = {"host_ip": "10.0.0.7", "host_port": 8080}
    publish(
        store,
        [
            endpoint("orders", 1, account="prod", **same),
            endpoint("orders", 2, account="prod", source="cloudmap", task_arn="", **same),  # the same task
            endpoint("orders", 3, account="staging", **same),  # overlapping VPC CIDRs
            endpoint("orders", 4, account="prod", region="eu-west-1", **same),  # and default VPCs
        ],
    )
    assert store.current is not None
    merged = store.current.services["orders"].endpoints
    assert sorted((e.account, e.region, e.source) for e in merged) == [
        ("prod", "eu-west-1", "ecs"),
        ("prod", "us-east-1", "ecs"),
        ("staging", "us-east-1", "ecs"),
    ]

"""build_snapshot and SnapshotStore: merging, ordering, stable generations, fail-static, waiting."""

from __future__ import annotations

import asyncio

from discobridge.model import Endpoint, Health, SourceName, SourceResult
from discobridge.snapshot import SnapshotStore, build_snapshot
from tests.conftest import renderers


def ep(service: str, ip: str, port: int, source: SourceName = SourceName.ECS, **kw: object) -> Endpoint:
    return Endpoint(service, ip, port, kw.pop("health", Health.HEALTHY), "us-east-1a", source, **kw)  # type: ignore[arg-type]


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_build_groups_by_service_sorts_numerically_and_dedupes_with_ecs_first() -> None:
    cloudmap = SourceResult(
        SourceName.CLOUDMAP,
        (ep("orders", "10.0.0.10", 80, SourceName.CLOUDMAP), ep("billing", "10.0.0.2", 7000, SourceName.CLOUDMAP)),
        1.0,
    )
    ecs = SourceResult(
        SourceName.ECS, (ep("orders", "10.0.0.10", 80, cluster="prod"), ep("orders", "10.0.0.9", 81)), 1.0
    )
    snapshot = build_snapshot([cloudmap, ecs], generation=7, built_at=2.0, renderers=renderers())
    assert list(snapshot.services) == ["billing", "orders"]
    orders = snapshot.services["orders"].endpoints
    assert [(e.host_ip, e.host_port) for e in orders] == [("10.0.0.9", 81), ("10.0.0.10", 80)]
    assert orders[1].source is SourceName.ECS and orders[1].cluster == "prod"
    assert snapshot.generation == 7


def test_serving_fails_open_to_unhealthy_endpoints_but_never_to_draining_ones() -> None:
    result = SourceResult(
        SourceName.ECS,
        (
            ep("a", "10.0.0.1", 1),
            ep("a", "10.0.0.2", 1, health=Health.DRAINING),
            ep("b", "10.0.0.3", 1, health=Health.UNHEALTHY),
            ep("b", "10.0.0.4", 1, health=Health.DRAINING),
        ),
        0.0,
    )
    services = build_snapshot([result], 1, 0.0, renderers()).services
    assert [e.host_ip for e in services["a"].serving] == ["10.0.0.1"]
    assert [e.host_ip for e in services["b"].serving] == ["10.0.0.3"]
    gone = build_snapshot(
        [SourceResult(SourceName.ECS, (ep("c", "10.0.0.5", 1, health=Health.DRAINING),), 0.0)], 1, 0.0, renderers()
    )
    assert gone.services["c"].serving == ()


async def test_store_bumps_generation_only_on_change_and_keeps_data_on_failure() -> None:
    clock = FakeClock()
    store = SnapshotStore(sources=[SourceName.ECS], renderers=renderers(), clock=clock)
    assert store.current is None and store.generation == 0 and store.age_s() is None

    endpoints = (ep("orders", "10.0.0.1", 32768),)
    assert store.publish(SourceResult(SourceName.ECS, endpoints, clock.now)) is True
    first = store.current
    assert first is not None and first.generation == 1

    clock.now += 5
    assert store.publish(SourceResult(SourceName.ECS, endpoints, clock.now)) is False
    assert store.current is first and store.age_s() == 0.0

    clock.now += 30
    store.record_failure(SourceName.ECS, "DescribeTasks failed: ThrottlingException")
    store.record_failure(SourceName.ECS, "DescribeTasks failed: ThrottlingException")
    assert store.current is first
    assert store.age_s() == 30.0
    status = store.status[SourceName.ECS]
    assert status.consecutive_failures == 2 and status.last_error and "Throttling" in status.last_error

    assert store.publish(SourceResult(SourceName.ECS, (), clock.now)) is True
    assert store.generation == 2 and store.status[SourceName.ECS].consecutive_failures == 0


async def test_wait_for_returns_on_publish_and_none_on_timeout() -> None:
    store = SnapshotStore(sources=[SourceName.ECS], renderers=renderers())
    assert await store.wait_for(0, timeout=0.01) is None

    waiter = asyncio.create_task(store.wait_for(0, timeout=5))
    await asyncio.sleep(0)  # let the waiter start waiting before the publish
    store.publish(SourceResult(SourceName.ECS, (ep("a", "10.0.0.1", 1),), 0.0))
    snapshot = await waiter
    assert snapshot is not None and snapshot.generation == 1
    assert await store.wait_for(0, timeout=0.01) is snapshot  # already newer: returns at once


async def test_the_same_endpoints_in_another_order_are_no_change() -> None:
    store = SnapshotStore(sources=[SourceName.ECS], renderers=renderers())
    endpoints = (ep("a", "10.0.0.1", 1), ep("a", "10.0.0.2", 1), ep("b", "10.0.0.3", 1))
    assert store.publish(SourceResult(SourceName.ECS, endpoints, 0.0)) is True
    assert await store.publish_in_thread(SourceResult(SourceName.ECS, endpoints[::-1], 1.0)) is False
    assert store.generation == 1

"""Pollers: a partition's good refreshes reach the store, failures keep its last good result and
back off with jitter, and a source's listing starts and stops partition loops."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from typing import Any

from structlog.testing import capture_logs

from discobridge.metrics import Metrics
from discobridge.model import Endpoint, PartitionKey, Service, scope_id
from discobridge.poller import PartitionPoller, SourcePoller, delay_after
from discobridge.render.dns import DnsRenderer
from discobridge.sources.base import Nudge, Progress, Refreshed
from discobridge.store import SnapshotStore
from tests.helpers import PROD, FakeClock, endpoint, make_store, partition, renderers

GOOD = (endpoint("orders", 1),)


class ScriptedPartition:
    """Returns or raises the next scripted outcome on each refresh; an int outcome is progress
    made before failing."""

    def __init__(self, *outcomes: tuple[Endpoint, ...] | BaseException | int, key: PartitionKey = PROD) -> None:
        self.key = key
        self.progress = Progress()
        self.nudge = Nudge()
        self._outcomes = list(outcomes)
        self.used_up = asyncio.Event()

    async def refresh(self) -> Refreshed:
        outcome = self._outcomes.pop(0)
        if not self._outcomes:
            self.used_up.set()
        if isinstance(outcome, int):
            self.progress.add(outcome)
            raise RuntimeError("DescribeTaskDefinition failed: ThrottlingException (after progress)")
        if isinstance(outcome, BaseException):
            raise outcome
        return Refreshed(outcome)


def make(partition: ScriptedPartition, **store_options: Any) -> tuple[PartitionPoller, Any, Metrics]:
    store, metrics = make_store(**store_options), Metrics.create()
    clock = store_options.get("clock")
    extra = {"clock": clock} if clock is not None else {}
    poller = PartitionPoller(
        partition=partition, store=store, metrics=metrics, interval_s=10.0, jitter=lambda lo, hi: hi, **extra
    )
    return poller, store, metrics


async def test_failure_after_good_refresh_keeps_snapshot_and_logs_staleness_naming_the_partition() -> None:
    poller, store, metrics = make(ScriptedPartition(GOOD, RuntimeError("DescribeTasks failed: ServerException"), GOOD))
    assert await poller.refresh_once() is True
    good = store.current
    with capture_logs() as logs:
        assert await poller.refresh_once() is False
    assert store.current is good
    failed = [e for e in logs if e["event"] == "source_refresh_failed"]
    assert failed and failed[0]["partition"] == "ecs/local/us-east-1/prod" and failed[0]["log_level"] == "warning"
    assert failed[0]["error"] == "ecs cluster prod in local/us-east-1: DescribeTasks failed: ServerException"
    assert failed[0]["stale_s"] is not None
    assert await poller.refresh_once() is True
    assert store.current is good  # same endpoints: same generation
    sample = metrics.registry.get_sample_value
    labels = {"source": "ecs", "partition": "ecs/local/us-east-1/prod"}
    assert sample("discobridge_source_refreshes_total", {**labels, "outcome": "failed"}) == 1
    assert sample("discobridge_source_refreshes_total", {**labels, "outcome": "ok"}) == 2


async def test_a_failure_that_made_progress_is_not_counted_as_failing() -> None:
    poller, store, _ = make(ScriptedPartition(3, RuntimeError("AccessDeniedException"), 0))
    with capture_logs():
        await poller.refresh_once()
        assert store.partitions[PROD].attempts.failing_since is None  # learned 3 things: still starting
        await poller.refresh_once()
        since = store.partitions[PROD].attempts.failing_since
        assert since is not None  # learned nothing: failing from now on
        await poller.refresh_once()
    assert store.partitions[PROD].attempts.failing_since == since
    assert store.partitions[PROD].attempts.consecutive_failures == 3


def test_delay_is_interval_with_jitter_then_exponential_backoff_capped_at_interval() -> None:
    high = lambda lo, hi: hi  # noqa: E731
    assert delay_after(10.0, 0, high) == 11.0  # upper jitter bound: interval * 1.1
    assert [delay_after(10.0, n, high) for n in range(1, 7)] == [1.0, 2.0, 4.0, 8.0, 10.0, 10.0]


async def test_run_refreshes_again_after_a_failure_until_cancelled() -> None:
    scripted = ScriptedPartition(GOOD, RuntimeError("boom"), GOOD, GOOD)
    store, metrics = make_store(), Metrics.create()
    poller = PartitionPoller(partition=scripted, store=store, metrics=metrics, interval_s=0.001)
    with capture_logs():
        task = asyncio.create_task(poller.run())
        await asyncio.wait_for(scripted.used_up.wait(), timeout=5)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    assert task.cancelled()
    sample = metrics.registry.get_sample_value
    labels = {"source": "ecs", "partition": PROD.id}
    assert sample("discobridge_source_refreshes_total", {**labels, "outcome": "failed"}) == 1
    assert (sample("discobridge_source_refreshes_total", {**labels, "outcome": "ok"}) or 0) >= 2


class BrokenDnsRenderer(DnsRenderer):
    """Fails to render one service, as a renderer bug would."""

    def __call__(self, services: Mapping[str, Service], generation: int, previous: Any) -> Any:
        if "poison" in services:
            raise RuntimeError("cannot render poison")
        return super().__call__(services, generation, previous)


async def test_a_failing_snapshot_build_is_a_failed_refresh_and_polling_goes_on() -> None:
    poison = (endpoint("poison", 9),)
    clock = FakeClock()
    poller, store, _ = make(
        ScriptedPartition(GOOD, poison, poison, GOOD), dns=BrokenDnsRenderer(zone="disco.test", ttl_s=5), clock=clock
    )
    assert await poller.refresh_once() is True
    good = store.current
    clock.now += 30
    with capture_logs():
        assert await poller.refresh_once() is False
        assert await poller.refresh_once() is False  # tried again: not taken for "unchanged"
    assert store.current is good
    assert "snapshot build failed" in str(store.partitions[PROD].attempts.last_error)
    assert store.age_of(PROD) == 30  # what is served is as old as the last build that held it
    assert await poller.refresh_once() is True


class ListedSource:
    """A source whose listing is scripted: each call lists the next set of partitions."""

    dynamic = True
    label = "the test clusters"

    def __init__(self, *listings: Sequence[ScriptedPartition]) -> None:
        self.scope = scope_id("ecs", "local", "us-east-1")
        self._listings = list(listings)
        self.listed = asyncio.Event()

    def known(self) -> Sequence[ScriptedPartition]:
        return []

    def adopt(self, key: PartitionKey) -> bool:
        return False

    async def list_partitions(self) -> Sequence[ScriptedPartition]:
        listing = self._listings.pop(0) if len(self._listings) > 1 else self._listings[0]
        if len(self._listings) == 1:
            self.listed.set()
        return listing


async def test_a_source_poller_follows_the_listing_and_the_store_drops_what_left() -> None:
    staging = partition("staging")
    first = [ScriptedPartition(*[GOOD] * 1000), ScriptedPartition(*[(endpoint("web", 2),)] * 1000, key=staging)]
    source = ListedSource(first, first[:1])
    store, metrics = SnapshotStore(renderers=renderers(), scopes={source.scope: source.label}), Metrics.create()
    poller = SourcePoller(source=source, store=store, metrics=metrics, interval_s=0.01)
    with capture_logs():
        task = asyncio.create_task(poller.run())
        assert await store.wait_until(lambda: store.current is not None and "web" in store.current.services, 5)
        await source.listed.wait()
        assert await store.wait_until(lambda: store.current is not None and "web" not in store.current.services, 5)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    assert list(store.partitions) == [PROD]
    await store.close()

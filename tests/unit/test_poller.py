"""Poller: publishes good refreshes, keeps the last good result on failure, backs off with jitter."""

from __future__ import annotations

import asyncio
from typing import Any

from structlog.testing import capture_logs

from discobridge.metrics import Metrics
from discobridge.model import Endpoint, Health, SourceName
from discobridge.poller import Poller
from discobridge.render.dns import DnsRenderer
from discobridge.snapshot import Renderers, SnapshotStore
from tests.conftest import renderers

GOOD = (Endpoint("orders", "10.0.0.1", 32768, Health.HEALTHY, "us-east-1a", SourceName.ECS),)


class ScriptedSource:
    """Returns or raises the next scripted outcome on each refresh."""

    name = SourceName.ECS
    warnings: tuple[str, ...] = ()

    def __init__(self, *outcomes: tuple[Endpoint, ...] | BaseException | float) -> None:
        self._outcomes = list(outcomes)
        self.used_up = asyncio.Event()

    async def refresh(self) -> tuple[Endpoint, ...]:
        outcome = self._outcomes.pop(0)
        if not self._outcomes:
            self.used_up.set()
        if isinstance(outcome, BaseException):
            raise outcome
        if isinstance(outcome, float):
            await asyncio.sleep(outcome)  # a hung AWS call, cut short by the poller's timeout
            return ()
        return outcome


def make(source: ScriptedSource, **kw: float) -> tuple[Poller, SnapshotStore, Metrics]:
    store, metrics = SnapshotStore(sources=[SourceName.ECS], renderers=renderers()), Metrics.create()
    poller = Poller(source=source, store=store, metrics=metrics, interval_s=10.0, jitter=lambda lo, hi: hi, **kw)
    return poller, store, metrics


async def test_failure_after_good_refresh_keeps_snapshot_and_logs_staleness() -> None:
    poller, store, metrics = make(ScriptedSource(GOOD, RuntimeError("DescribeTasks failed: ServerException"), GOOD))
    assert await poller.refresh_once() is True
    good = store.current
    with capture_logs() as logs:
        assert await poller.refresh_once() is False
    assert store.current is good
    failed = [e for e in logs if e["event"] == "source_refresh_failed"]
    assert failed and failed[0]["source"] == SourceName.ECS and "ServerException" in failed[0]["error"]
    assert failed[0]["stale_s"] is not None and failed[0]["log_level"] == "warning"
    assert await poller.refresh_once() is True
    assert store.current is good  # same endpoints: same generation
    sample = metrics.registry.get_sample_value
    assert sample("discobridge_source_refreshes_total", {"source": "ecs", "outcome": "failed"}) == 1
    assert sample("discobridge_source_refreshes_total", {"source": "ecs", "outcome": "ok"}) == 2
    assert sample("discobridge_snapshot_generation") == 1


async def test_hung_refresh_times_out_as_a_failure() -> None:
    poller, store, _ = make(ScriptedSource(30.0), timeout_s=0.01)
    assert await poller.refresh_once() is False
    assert store.status[SourceName.ECS].last_error == "refresh took longer than 0.01 s"


def test_delay_is_interval_with_jitter_then_exponential_backoff_capped_at_interval() -> None:
    poller, _, _ = make(ScriptedSource())
    assert poller.delay_after(0) == 11.0  # upper jitter bound: interval * 1.1
    assert [poller.delay_after(n) for n in range(1, 7)] == [1.0, 2.0, 4.0, 8.0, 10.0, 10.0]


async def test_run_refreshes_again_after_a_failure_until_cancelled() -> None:
    source = ScriptedSource(GOOD, RuntimeError("boom"), GOOD, GOOD)
    store, metrics = SnapshotStore(sources=[SourceName.ECS], renderers=renderers()), Metrics.create()
    poller = Poller(source=source, store=store, metrics=metrics, interval_s=0.001)
    task = asyncio.create_task(poller.run())
    await asyncio.wait_for(source.used_up.wait(), timeout=5)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    assert task.cancelled()
    sample = metrics.registry.get_sample_value
    assert sample("discobridge_source_refreshes_total", {"source": "ecs", "outcome": "failed"}) == 1
    assert sample("discobridge_source_refreshes_total", {"source": "ecs", "outcome": "ok"}) >= 2


class BrokenDnsRenderer:
    """Fails to render one service, as a renderer bug would."""

    def __init__(self) -> None:
        self._real = DnsRenderer(zone="disco.test", ttl_s=5)

    def __call__(self, services: Any, generation: int) -> Any:
        if "poison" in services:
            raise RuntimeError("cannot render poison")
        return self._real(services, generation)


async def test_a_failing_snapshot_build_is_a_failed_refresh_and_polling_goes_on() -> None:
    poison = (Endpoint("poison", "10.0.0.9", 1, Health.HEALTHY, "us-east-1a", SourceName.ECS),)
    store, metrics = (
        SnapshotStore(sources=[SourceName.ECS], renderers=Renderers(dns=BrokenDnsRenderer())),
        Metrics.create(),
    )
    poller = Poller(source=ScriptedSource(GOOD, poison, poison, GOOD), store=store, metrics=metrics, interval_s=10.0)
    assert await poller.refresh_once() is True
    good = store.current
    with capture_logs():
        assert await poller.refresh_once() is False
        assert await poller.refresh_once() is False  # tried again: not taken for "unchanged"
    assert store.current is good
    assert "snapshot build failed" in str(store.status[SourceName.ECS].last_error)
    assert await poller.refresh_once() is True

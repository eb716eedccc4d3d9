"""The refresh loops: one per partition (fetch now, then every interval with jitter, back off on
failure), and one per source that lists its partitions and keeps a loop running for each."""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable, Sequence

import structlog

from discobridge.metrics import Metrics
from discobridge.model import PartitionKey, PartitionResult
from discobridge.sources.base import Partition, Source
from discobridge.store import SnapshotStore

log = structlog.get_logger(__name__)

Jitter = Callable[[float, float], float]


def delay_after(interval_s: float, failures: int, jitter: Jitter) -> float:
    """The wait before the next attempt: the interval ±10%, or exponential backoff on failure."""
    if failures == 0:
        return interval_s * jitter(0.9, 1.1)
    backoff = min(interval_s, interval_s / 10 * 2.0 ** (failures - 1))
    # Full jitter in the upper half: replicas that failed together do not retry together.
    return backoff * jitter(0.5, 1.0)


class PartitionPoller:
    """Refreshes one partition forever; a failure keeps its last good result served."""

    def __init__(
        self,
        *,
        partition: Partition,
        store: SnapshotStore,
        metrics: Metrics,
        interval_s: float,
        clock: Callable[[], float] = time.monotonic,
        jitter: Jitter = random.uniform,
        slow_after_s: float = float("inf"),
    ) -> None:
        self._partition = partition
        # A refresh slower than this leaves too little of [health] max_staleness_s for the next
        # one: warned about (once per spell), before /healthz starts failing for it.
        self._slow_after_s = slow_after_s
        self._slow = False
        self._store = store
        self._metrics = metrics
        self._interval_s = interval_s
        self._clock = clock
        self._jitter = jitter
        self._warnings: tuple[str, ...] = ()

    @property
    def key(self) -> PartitionKey:
        return self._partition.key

    async def run(self) -> None:
        failures = 0
        while True:
            started = self._clock()
            failures = 0 if await self.refresh_once() else failures + 1
            delay = delay_after(self._interval_s, failures, self._jitter)
            if failures:
                await asyncio.sleep(delay)  # a backoff is kept: events arriving do not cut it short
                continue
            # The interval runs from start to start: a refresh that takes longer than it is
            # followed by the next at once, within the budget, rather than an interval later.
            await self._partition.nudge.wait(max(0.0, delay - (self._clock() - started)))

    async def refresh_once(self) -> bool:
        """Refresh the partition once and hand the result to the store; False when it failed."""
        key = self._partition.key
        started, learned = self._clock(), self._partition.progress.count
        try:
            refreshed = await self._partition.refresh()
        except Exception as exc:  # noqa: BLE001 - any failure must leave the last good result served
            progressed = self._partition.progress.count > learned
            return self._failed(f"{key}: {exc}", started, progressed=progressed)
        duration = self._clock() - started
        result = PartitionResult(refreshed.endpoints, self._clock(), refreshed.warnings)
        if not await self._store.submit(key, result):
            return self._failed(f"{key}: snapshot build failed", started, progressed=False, record=False)
        self._metrics.source_refreshes.labels(key.source, key.id, "ok").inc()
        self._metrics.source_refresh_duration.labels(key.source, key.id).observe(duration)
        if (duration > self._slow_after_s) != self._slow:
            self._slow = not self._slow
            if self._slow:
                log.warning(
                    "partition_refresh_slow",
                    partition=key.id,
                    duration_s=round(duration, 1),
                    hint="the API budget cannot refresh this partition within half of [health] max_staleness_s: "
                    "raise it, or turn on ECS events ([events] topic_arn)",
                )
        log.info(
            "source_refreshed",
            source=key.source,
            partition=key.id,
            endpoints=len(result.endpoints),
            services=len({e.service for e in result.endpoints}),
            duration_s=round(duration, 3),
            generation=self._store.generation,
        )
        return True

    def _failed(self, error: str, started: float, *, progressed: bool, record: bool = True) -> bool:
        """Record and log a failed refresh; the partition's last good result stays served."""
        key, duration = self._partition.key, self._clock() - started
        if record:
            self._store.record_failure(key, error, progressed=progressed)
        self._metrics.source_refreshes.labels(key.source, key.id, "failed").inc()
        self._metrics.source_refresh_duration.labels(key.source, key.id).observe(duration)
        log.warning(
            "source_refresh_failed",
            source=key.source,
            partition=key.id,
            error=error,
            progressed=progressed,
            duration_s=round(duration, 3),
            stale_s=_rounded(self._store.age_of(key)),
            generation=self._store.generation,
        )
        return False


class SourcePoller:
    """Keeps one source's partitions current: lists them (every interval when they can change)
    and runs one PartitionPoller per partition, starting and stopping them as the list changes."""

    def __init__(
        self,
        *,
        source: Source,
        store: SnapshotStore,
        metrics: Metrics,
        interval_s: float,
        clock: Callable[[], float] = time.monotonic,
        jitter: Jitter = random.uniform,
        slow_after_s: float = float("inf"),
    ) -> None:
        self._source = source
        self._slow_after_s = slow_after_s
        self._store = store
        self._metrics = metrics
        self._interval_s = interval_s
        self._clock = clock
        self._jitter = jitter
        self._running: dict[PartitionKey, asyncio.Task[None]] = {}
        self._stopping: set[asyncio.Task[None]] = set()

    async def run(self) -> None:
        try:
            self._follow(self._source.known())
            failures = 0
            while True:
                partitions = await self.list_once()
                if partitions is not None:
                    self._follow(partitions)
                failures = 0 if partitions is not None else failures + 1
                if not self._source.dynamic and failures == 0:
                    await asyncio.Event().wait()  # fixed by the config: nothing more to list
                await asyncio.sleep(delay_after(self._interval_s, failures, self._jitter))
        finally:
            tasks = [*self._running.values(), *self._stopping]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    async def list_once(self) -> Sequence[Partition] | None:
        """List the partitions once and tell the store; None when listing failed."""
        try:
            partitions = await self._source.list_partitions()
        except Exception as exc:  # noqa: BLE001 - the partitions already known keep refreshing
            error = f"{self._source.label}: {exc}"
            self._store.listing_failed(self._source.scope, error)
            log.warning("source_listing_failed", scope=self._source.scope, error=error)
            return None
        self._store.listed(self._source.scope, [p.key for p in partitions])
        return partitions

    def _follow(self, partitions: Sequence[Partition]) -> None:
        wanted = {p.key: p for p in partitions}
        for key in [k for k in self._running if k not in wanted]:
            stopping = self._running.pop(key)
            stopping.cancel()
            self._stopping.add(stopping)
            stopping.add_done_callback(self._stopping.discard)
        for key, partition in wanted.items():
            if key not in self._running:
                poller = PartitionPoller(
                    partition=partition,
                    store=self._store,
                    metrics=self._metrics,
                    interval_s=self._interval_s,
                    clock=self._clock,
                    jitter=self._jitter,
                    slow_after_s=self._slow_after_s,
                )
                self._running[key] = asyncio.create_task(poller.run(), name=f"poll {key.id}")

    async def refresh_all(self) -> bool:
        """List and refresh every partition once, concurrently (for `discobridge snapshot`)."""
        partitions = await self.list_once()
        if partitions is None:
            return False
        pollers = [
            PartitionPoller(partition=p, store=self._store, metrics=self._metrics, interval_s=self._interval_s)
            for p in partitions
        ]
        return all(await asyncio.gather(*(p.refresh_once() for p in pollers)))


def _rounded(value: float | None) -> float | None:
    return None if value is None else round(value, 1)

"""One refresh loop per source: fetch now, then every interval with jitter; back off on failure."""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable

import structlog

from discobridge.metrics import Metrics
from discobridge.model import SourceResult
from discobridge.snapshot import SnapshotStore
from discobridge.sources.base import Source

log = structlog.get_logger(__name__)


class Poller:
    """Runs `source.refresh()` forever; a failure keeps the source's last good result served."""

    def __init__(
        self,
        *,
        source: Source,
        store: SnapshotStore,
        metrics: Metrics,
        interval_s: float,
        timeout_s: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
        jitter: Callable[[float, float], float] = random.uniform,
    ) -> None:
        self._source = source
        self._store = store
        self._metrics = metrics
        self._interval_s = interval_s
        self._timeout_s = timeout_s
        self._clock = clock
        self._jitter = jitter

    async def run(self) -> None:
        failures = 0
        while True:
            failures = 0 if await self.refresh_once() else failures + 1
            await asyncio.sleep(self.delay_after(failures))

    def delay_after(self, failures: int) -> float:
        """The wait before the next refresh: the interval ±10%, or exponential backoff on failure."""
        if failures == 0:
            return self._interval_s * self._jitter(0.9, 1.1)
        backoff = min(self._interval_s, self._interval_s / 10 * 2.0 ** (failures - 1))
        # Full jitter in the upper half: replicas that failed together do not retry together.
        return backoff * self._jitter(0.5, 1.0)

    async def refresh_once(self) -> bool:
        """Refresh the source once and publish the result; False when it failed."""
        source = self._source.name
        started = self._clock()
        try:
            async with asyncio.timeout(self._timeout_s):
                endpoints = await self._source.refresh()
        except Exception as exc:  # noqa: BLE001 - any failure must leave the last good result served
            timed_out = isinstance(exc, TimeoutError)
            return self._failed(f"refresh took longer than {self._timeout_s:g} s" if timed_out else str(exc), started)
        duration = self._clock() - started
        result = SourceResult(source, endpoints, self._clock(), self._source.warnings)
        try:
            changed = await self._store.publish_in_thread(result)
        except Exception as exc:
            log.exception("snapshot_build_failed", source=source)
            return self._failed(f"snapshot build failed: {exc!r}", started)
        self._metrics.source_refreshes.labels(source, "ok").inc()
        self._metrics.source_refresh_duration.labels(source).observe(duration)
        self._metrics.snapshot_generation.set(self._store.generation)
        log.info(
            "source_refreshed",
            source=source,
            endpoints=len(endpoints),
            services=len({e.service for e in endpoints}),
            changed=changed,
            duration_s=round(duration, 3),
            generation=self._store.generation,
        )
        return True

    def _failed(self, error: str, started: float) -> bool:
        """Record and log a failed refresh; the source's last good result stays served."""
        source, duration = self._source.name, self._clock() - started
        self._store.record_failure(source, error or "unknown error")
        self._metrics.source_refreshes.labels(source, "failed").inc()
        self._metrics.source_refresh_duration.labels(source).observe(duration)
        log.warning(
            "source_refresh_failed",
            source=source,
            error=error,
            duration_s=round(duration, 3),
            stale_s=_rounded(self._store.age_s()),
            generation=self._store.generation,
        )
        return False


def _rounded(value: float | None) -> float | None:
    return None if value is None else round(value, 1)

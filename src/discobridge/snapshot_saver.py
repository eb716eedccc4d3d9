"""Keeps the saved snapshot current: after every change and every confirmation of freshness, at
most once per `min_interval_s`, so the saved data is as old as the last good poll, not the last
change (a replica restored in a quiet estate is not mistaken for stale)."""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import Callable
from typing import Any, Protocol

import structlog

from discobridge.snapshot_file import Saved
from discobridge.store import SnapshotStore

log = structlog.get_logger(__name__)


class SnapshotTarget(Protocol):
    @property
    def name(self) -> str: ...

    async def read(self) -> bytes | None: ...

    async def write(self, saved: Saved) -> None: ...


class SnapshotSaver:
    """Writes the store's served results and the sources' caches to a target."""

    def __init__(
        self,
        *,
        store: SnapshotStore,
        target: SnapshotTarget,
        caches: Callable[[], dict[str, Any]],
        min_interval_s: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._store = store
        self._target = target
        self._caches = caches
        self._min_interval_s = min_interval_s
        self._clock = clock
        self.written = 0

    async def run(self) -> None:
        saved_revision, last_write = -1, -float("inf")
        while True:
            await self._store.wait_until(functools.partial(self._due, saved_revision), None)
            wait_s = last_write + self._min_interval_s - self._clock()
            if wait_s > 0:
                await asyncio.sleep(wait_s)
                continue  # check again: a build may have started meanwhile
            saved_revision = self._store.revision
            last_write = self._clock()
            await self.save_once()

    def _due(self, saved_revision: int) -> bool:
        return self._store.current is not None and self._store.revision != saved_revision and self._store.settled

    async def save_once(self) -> None:
        saved = Saved(dict(self._store.served_results()), self._caches())
        try:
            await self._target.write(saved)
        except Exception as exc:  # noqa: BLE001 - a full disk or an S3 outage must not stop the daemon
            log.warning("snapshot_file_not_written", path=self._target.name, error=str(exc))
            return
        self.written += 1
        log.info("snapshot_saved", path=self._target.name, generation=self._store.generation)

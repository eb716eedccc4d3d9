"""The store: every partition's last good result and attempts, and the snapshot built from them.

Partitions fail alone: a failed refresh keeps that partition's last good result in the snapshot
while the others keep updating. The first snapshot waits until every expected partition has a
first result (see `readiness`), so a replica never serves a partial estate as if it were whole.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

import structlog

from discobridge.model import PartitionKey, PartitionResult
from discobridge.readiness import Attempts, Unit, ready, without_result
from discobridge.render import Renderer
from discobridge.snapshot import ServiceMerger, Snapshot, build_snapshot

log = structlog.get_logger(__name__)


@dataclass(frozen=True, slots=True)
class PartitionStatus:
    """What the store knows of one partition: its attempts and its last good result."""

    key: PartitionKey
    attempts: Attempts
    result: PartitionResult | None


class SnapshotStore:
    """Holds the current snapshot; publishing swaps one reference, so readers never see a mix."""

    def __init__(
        self,
        *,
        renderers: Sequence[Renderer[Any]],
        scopes: Mapping[str, str] | None = None,
        startup_wait_s: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
        after_build: Callable[[], None] | None = None,
    ) -> None:
        self._renderers = tuple(renderers)
        self._after_build = after_build  # run on the build's thread once a build is done
        self._clock = clock
        self._startup_wait_s = startup_wait_s
        # Per scope (a source in one account and region, named for people in `scopes`): its
        # partitions as last listed (None: never listed yet), and the attempts at listing them.
        self._scope_names = dict(scopes or {})
        self._expected: dict[str, frozenset[PartitionKey] | None] = dict.fromkeys(self._scope_names)
        self._listings: dict[str, Attempts] = {s: Attempts() for s in self._scope_names}
        self._attempts: dict[PartitionKey, Attempts] = {}
        self._results: dict[PartitionKey, PartitionResult] = {}  # the latest good results
        self._built: dict[PartitionKey, PartitionResult] = {}  # what `current` was built from
        self._dirty: set[PartitionKey] = set()  # results (or removals) not in `current` yet
        self._waiting: dict[PartitionKey, list[asyncio.Future[bool]]] = {}
        self._builder: asyncio.Task[None] | None = None
        self._merger = ServiceMerger()  # a memo of unchanged services, used by one build at a time
        self.revision = 0  # grows with every accepted result, fresh or changed: what a saver saves
        # Set and replaced on every change (snapshot or status): waiters hold the event of the
        # state they saw.
        self._updated = asyncio.Event()
        self.current: Snapshot | None = None

    # ---- reading --------------------------------------------------------------------------
    @property
    def generation(self) -> int:
        return self.current.generation if self.current else 0

    @property
    def partitions(self) -> Mapping[PartitionKey, PartitionStatus]:
        """Every expected or known partition, in key order."""
        keys = sorted(self._attempts.keys() | self._results.keys() | self._expected_keys())
        return MappingProxyType(
            {k: PartitionStatus(k, self._attempts.get(k, Attempts()), self._results.get(k)) for k in keys}
        )

    @property
    def listings(self) -> Mapping[str, Attempts]:
        return MappingProxyType(self._listings)

    def listed_scopes(self) -> frozenset[str]:
        return frozenset(s for s, keys in self._expected.items() if keys is not None)

    def age_of(self, key: PartitionKey) -> float | None:
        """Seconds since `key` last refreshed successfully; None if it never has."""
        last = self._attempts.get(key, Attempts()).last_success_at
        return None if last is None else self._clock() - last

    def age_s(self) -> float | None:
        """Seconds since the oldest served partition's last good refresh; None before any."""
        times = [r.refreshed_at for r in self._results.values()]
        return self._clock() - min(times) if times else None

    def now(self) -> float:
        return self._clock()

    @property
    def settled(self) -> bool:
        """No result is waiting for a build."""
        return not self._dirty

    def served_results(self) -> Mapping[PartitionKey, PartitionResult]:
        """What the current snapshot holds, each partition dated by its last good refresh."""
        return MappingProxyType({**self._built, **{k: r for k, r in self._results.items() if k not in self._dirty}})

    def pending(self) -> list[str]:
        """What the first snapshot still waits for, as short sentences; [] once published."""
        if self.current is not None:
            return []
        return without_result(self._units(), self._clock(), self._startup_wait_s)

    # ---- what the pollers report ----------------------------------------------------------
    def listed(self, scope: str, keys: Iterable[PartitionKey]) -> None:
        """A scope's partitions as AWS lists them now: partitions no longer listed are dropped."""
        wanted = frozenset(keys)
        self._expected[scope] = wanted
        self._listings[scope] = self._listings.get(scope, Attempts()).succeeded(self._clock())
        for key in [k for k in self._attempts.keys() | self._results.keys() if k.scope == scope and k not in wanted]:
            self._attempts.pop(key, None)
            if self._results.pop(key, None) is not None:
                self._dirty.add(key)
                self.revision += 1
        self._changed()

    def listing_failed(self, scope: str, error: str) -> None:
        self._listings[scope] = self._listings.get(scope, Attempts()).failed(self._clock(), error, progressed=False)
        self._changed()

    def restore(self, key: PartitionKey, result: PartitionResult) -> None:
        """Accept a result saved by an earlier run (or another replica), dated as it was saved.
        A scope not listed yet expects what was restored for it until its first listing."""
        known = self._results.get(key)
        if known is not None and known.refreshed_at >= result.refreshed_at:
            return
        self._results[key] = result
        self._attempts[key] = self._attempts.get(key, Attempts()).succeeded(result.refreshed_at)
        if self._expected.get(key.scope) is None:
            self._expected[key.scope] = frozenset({key, *self._restored_keys(key.scope)})
            self._listings.setdefault(key.scope, Attempts())
        self._dirty.add(key)
        self._changed()

    def record_failure(self, key: PartitionKey, error: str, *, progressed: bool = False) -> None:
        """Note a failed refresh; the partition's last good result stays in the snapshot."""
        self._attempts[key] = self._attempts.get(key, Attempts()).failed(self._clock(), error, progressed)
        self._changed()

    async def submit(self, key: PartitionKey, result: PartitionResult) -> bool:
        """Record a good refresh; False when the snapshot that holds it could not be built (the
        partition then keeps its previous result, and the refresh counts as failed)."""
        if not self._accept(key, result) or not self._is_ready():
            self._changed()
            return True  # unchanged, or held until every partition has a first result
        done: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._waiting.setdefault(key, []).append(done)
        self._changed()
        return await done

    def publish(self, key: PartitionKey, result: PartitionResult) -> bool:
        """Record a good refresh and build on this thread at once (tests and tools); True when a
        new snapshot was published."""
        if not self._accept(key, result) or not self._is_ready():
            return False
        self._dirty.clear()
        self._built = dict(self._results)
        self._swap(self._build(self._built))
        self._fresh(self._built.keys())
        return True

    def _accept(self, key: PartitionKey, result: PartitionResult) -> bool:
        """Take a good refresh; True when it changes what is served. A changed result counts as
        fresh only once a snapshot holding it is built (a build that fails is a failed refresh)."""
        previous = self._results.get(key)
        self._results[key] = result
        self.revision += 1
        if previous is not None and _same(previous, result) and key not in self._dirty:
            self._attempts[key] = self._attempts.get(key, Attempts()).succeeded(result.refreshed_at)
            return False  # fresh again, and unchanged: no new snapshot
        self._dirty.add(key)
        return True

    # ---- building --------------------------------------------------------------------------
    def _changed(self) -> None:
        """Something changed: start a build if one is due, and wake every waiter."""
        if self._build_due() and (self._builder is None or self._builder.done()):
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:  # no event loop (a tool, a unit test): publish() builds inline
                pass
            else:
                self._builder = loop.create_task(self._build_pending(), name="snapshot-builder")
        self._notify()

    async def _build_pending(self) -> None:
        """Build until nothing is dirty; one build takes every result that arrived meanwhile.

        When a build of several new results fails, each is tried alone (renderers keep no state
        outside their documents, so a trial build changes nothing), and those that break it are
        put back to their last built result; the rest are then built together.
        """
        while self._build_due():
            batch = set(self._dirty)
            waiting = {k: self._waiting.pop(k, []) for k in batch}  # those who sent these results
            results = self._with(self._built, batch)
            tried = {k: self._results.get(k) for k in batch}
            started = time.perf_counter()
            try:
                snapshot = await asyncio.to_thread(self._build, results)
            except Exception as exc:  # noqa: BLE001 - a renderer bug must not stop the daemon
                for key, futures in waiting.items():
                    self._waiting.setdefault(key, [])[:0] = futures
                if not batch:  # nothing new in it (an empty first snapshot): wait for a change
                    log.error("snapshot_build_failed", error=repr(exc))
                    return
                await self._isolate(tried, exc)
                continue
            # A result that arrived during the build stays dirty for the next one.
            self._dirty -= {k for k in batch if self._results.get(k) is results.get(k)}
            self._built = results
            self._fresh(batch & results.keys())
            self._swap(snapshot)
            log.info(
                "snapshot_published",
                generation=snapshot.generation,
                partitions=len(batch),
                services=len(snapshot.services),
                duration_s=round(time.perf_counter() - started, 3),
            )
            for futures in waiting.values():
                _settle(futures, ok=True)
        if not self._is_ready():
            # A partition was listed meanwhile that has no result yet: what was sent is held for
            # the first snapshot, as submit() holds results that arrive before it.
            for key in list(self._waiting):
                _settle(self._waiting.pop(key), ok=True)

    async def _isolate(self, tried: Mapping[PartitionKey, PartitionResult | None], exc: Exception) -> None:
        """Find which of the results tried together break a build, and put those back."""
        breaking: dict[PartitionKey, Exception] = {}
        if len(tried) > 1:
            for key, result in sorted(tried.items()):
                trial = dict(self._built)
                if result is None:
                    trial.pop(key, None)
                else:
                    trial[key] = result
                try:
                    await asyncio.to_thread(self._build, trial)
                except Exception as failure:  # noqa: BLE001
                    breaking[key] = failure
        for key in breaking or tried:  # only together do they fail: none of them is served
            self._revert(key, tried[key], breaking.get(key, exc))

    def _with(
        self, base: Mapping[PartitionKey, PartitionResult], keys: Iterable[PartitionKey]
    ) -> dict[PartitionKey, PartitionResult]:
        """`base` with the latest results of `keys` (and without those no longer listed)."""
        results = dict(base)
        for key in keys:
            if key in self._results:
                results[key] = self._results[key]
            else:
                results.pop(key, None)
        return results

    def _fresh(self, keys: Iterable[PartitionKey]) -> None:
        """The built results of `keys` are served: their partitions are as fresh as those results."""
        for key in keys:
            result = self._built[key]
            attempts = self._attempts.get(key, Attempts())
            if attempts.last_success_at is None or attempts.last_success_at < result.refreshed_at:
                self._attempts[key] = attempts.succeeded(result.refreshed_at)

    def _revert(self, key: PartitionKey, tried: PartitionResult | None, exc: Exception) -> None:
        """Serve the last built result of `key` again, unless something newer came meanwhile
        (a new result is tried in the next build; a partition no longer listed stays gone)."""
        log.error("snapshot_build_failed", partition=key.id, error=repr(exc))
        if tried is None:
            self._dirty.discard(key)  # a removal that breaks the build: it stays removed
            return
        if self._results.get(key) is not tried:
            return
        built = self._built.get(key)
        if built is None:
            self._results.pop(key, None)
        else:
            self._results[key] = built
        self._dirty.discard(key)
        self._attempts[key] = self._attempts.get(key, Attempts()).failed(
            self._clock(), f"{key}: snapshot build failed: {exc!r}", progressed=False
        )
        self._resolve({key}, ok=False)

    def _resolve(self, keys: Iterable[PartitionKey], *, ok: bool) -> None:
        for key in keys:
            _settle(self._waiting.pop(key, []), ok=ok)

    def _build(self, results: Mapping[PartitionKey, PartitionResult]) -> Snapshot:
        snapshot = build_snapshot(
            results, self.generation + 1, self._clock(), self._renderers, self.current, self._merger
        )
        if self._after_build is not None:
            self._after_build()
        return snapshot

    def _swap(self, snapshot: Snapshot) -> None:
        first = self.current is None
        before = set(self.current.warnings) if self.current else set()
        for warning in snapshot.warnings:
            if warning not in before:  # once, when it appears: not once per build
                log.warning("snapshot_warning", warning=warning, generation=snapshot.generation)
        self.current = snapshot
        if first:
            log.info("snapshot_first_published", generation=snapshot.generation, partitions=len(self._results))
        self._notify()

    # ---- readiness -------------------------------------------------------------------------
    def _is_ready(self) -> bool:
        return self.current is not None or ready(self._units(), self._clock(), self._startup_wait_s)

    def _build_due(self) -> bool:
        return (bool(self._dirty) or self.current is None) and self._is_ready()

    def _units(self) -> list[Unit]:
        units = [
            Unit(
                self._scope_names.get(scope, scope),
                self._listings.get(scope, Attempts()),
                has_result=keys is not None,
                holds_data=False,
            )
            for scope, keys in sorted(self._expected.items())
        ]
        for key in sorted(self._expected_keys()):
            units.append(Unit(str(key), self._attempts.get(key, Attempts()), has_result=key in self._results))
        return units

    def _expected_keys(self) -> set[PartitionKey]:
        return {k for keys in self._expected.values() if keys for k in keys}

    def _restored_keys(self, scope: str) -> set[PartitionKey]:
        return {k for k in self._results if k.scope == scope}

    # ---- waiting ---------------------------------------------------------------------------
    async def wait_for(self, generation: int, timeout: float | None) -> Snapshot | None:  # noqa: ASYNC109
        """Wait until a snapshot newer than `generation` is published; None on timeout (None: never)."""
        if await self.wait_until(lambda: self.generation > generation, timeout):
            return self.current
        return None

    async def wait_until(self, condition: Callable[[], bool], timeout: float | None) -> bool:  # noqa: ASYNC109
        """Wait until `condition()` holds after any change of the store; False on timeout."""
        try:
            async with asyncio.timeout(timeout):
                while not condition():
                    await self._updated.wait()
        except TimeoutError:
            return False
        return True

    def wake_waiters(self) -> None:
        """Wake every wait_until() to check its condition again (state outside the store changed)."""
        self._notify()

    async def flush(self) -> None:
        """Wait for the build in progress, if any (so restored data is served before listening)."""
        if self._builder is not None and not self._builder.done():
            await asyncio.shield(self._builder)

    async def close(self) -> None:
        """Finish the build in progress, if any (at shutdown)."""
        if self._builder is not None:
            self._builder.cancel()
            await asyncio.gather(self._builder, return_exceptions=True)
        for futures in self._waiting.values():
            for done in futures:
                done.cancel()
        self._waiting.clear()

    def _notify(self) -> None:
        self._updated.set()
        self._updated = asyncio.Event()


def _settle(futures: Iterable[asyncio.Future[bool]], *, ok: bool) -> None:
    for done in futures:
        if not done.done():
            done.set_result(ok)


def _same(old: PartitionResult, new: PartitionResult) -> bool:
    # Partitions list their endpoints in a stable order (sources.base.Partition), so an unchanged
    # result is an equal tuple, usually the very same one.
    return old.warnings == new.warnings and (old.endpoints is new.endpoints or old.endpoints == new.endpoints)

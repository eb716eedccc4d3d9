"""The immutable snapshot frontends read, how it is built from source results, and its store."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from types import MappingProxyType

from discobridge.model import Endpoint, Service, SourceName, SourceResult
from discobridge.render.dns import DnsAnswers
from discobridge.render.eureka import EurekaDocuments, EurekaRenderer
from discobridge.render.resolver import ResolverDocuments, ResolverRenderer
from discobridge.render.status import StatusSections


@dataclass(frozen=True, slots=True)
class Snapshot:
    """What every frontend serves: the services, and their answers already rendered to bytes."""

    generation: int
    services: Mapping[str, Service]
    # The generation in which each service last changed: the index of a long poll on it.
    changed_at: Mapping[str, int]
    built_at: float
    dns: DnsAnswers
    resolver: ResolverDocuments
    status_sections: bytes
    eureka: EurekaDocuments


@dataclass(frozen=True, slots=True)
class Renderers:
    """Turn services into a frontend's bytes; called once per snapshot, never per request."""

    dns: Callable[[Mapping[str, Service], int], DnsAnswers]
    resolver: Callable[[Mapping[str, Service], int], ResolverDocuments] = field(default_factory=ResolverRenderer)
    status_sections: Callable[[Mapping[str, Service]], bytes] = field(default_factory=StatusSections)
    eureka: Callable[[Mapping[str, Service], int], EurekaDocuments] = field(default_factory=EurekaRenderer)


@dataclass(frozen=True, slots=True)
class SourceStatus:
    """What the poller last learned about one source: when it last succeeded, and the last error."""

    source: SourceName
    last_success_at: float | None = None
    last_error: str | None = None
    consecutive_failures: int = 0
    endpoints: int = 0
    warnings: tuple[str, ...] = ()


def build_snapshot(
    results: Iterable[SourceResult],
    generation: int,
    built_at: float,
    renderers: Renderers,
    previous: Snapshot | None = None,
) -> Snapshot:
    """Merge source results into services; the first source listing an ip:port wins (ECS first)."""
    by_service: dict[str, dict[tuple[str, int], Endpoint]] = {}
    for result in sorted(results, key=lambda r: list(SourceName).index(r.source)):
        for endpoint in result.endpoints:
            seen = by_service.setdefault(endpoint.service, {})
            seen.setdefault((endpoint.host_ip, endpoint.host_port), endpoint)
    services = {
        name: Service(name, tuple(sorted(found.values(), key=_endpoint_order)))
        for name, found in sorted(by_service.items())
    }
    frozen = MappingProxyType(services)
    changed_at = {
        name: previous.changed_at[name]
        if previous is not None and previous.services.get(name) == service
        else generation
        for name, service in services.items()
    }
    return Snapshot(
        generation=generation,
        services=frozen,
        changed_at=MappingProxyType(changed_at),
        built_at=built_at,
        dns=renderers.dns(frozen, generation),
        resolver=renderers.resolver(frozen, generation),
        status_sections=renderers.status_sections(frozen),
        eureka=renderers.eureka(frozen, generation),
    )


def _endpoint_order(endpoint: Endpoint) -> tuple[tuple[int, ...] | str, int]:
    # Numeric IPv4 order, so 10.0.0.9 sorts before 10.0.0.10.
    parts = endpoint.host_ip.split(".")
    key: tuple[int, ...] | str = (
        tuple(int(p) for p in parts) if len(parts) == 4 and all(p.isdigit() for p in parts) else endpoint.host_ip
    )
    return key, endpoint.host_port


class SnapshotStore:
    """Holds the current snapshot; publishing swaps one reference, so readers never see a mix."""

    def __init__(
        self,
        *,
        sources: Iterable[SourceName],
        renderers: Renderers,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._clock = clock
        self._renderers = renderers
        self._results: dict[SourceName, SourceResult] = {}
        self._status = {s: SourceStatus(s) for s in sources}
        # Set and replaced on every change (snapshot or source status): waiters hold the event
        # of the state they saw.
        self._updated = asyncio.Event()
        self._building = asyncio.Lock()
        self.current: Snapshot | None = None

    @property
    def generation(self) -> int:
        return self.current.generation if self.current else 0

    @property
    def results(self) -> Mapping[SourceName, SourceResult]:
        """Each source's last good result: what the snapshot was built from."""
        return MappingProxyType(self._results)

    @property
    def status(self) -> Mapping[SourceName, SourceStatus]:
        return MappingProxyType(self._status)

    def age_of(self, source: SourceName) -> float | None:
        """Seconds since `source` last refreshed successfully; None if it never has."""
        last = self._status[source].last_success_at
        return None if last is None else self._clock() - last

    def age_s(self) -> float | None:
        """Seconds since the oldest source's last good refresh; None before any success."""
        times = [s.last_success_at for s in self._status.values() if s.last_success_at is not None]
        return self._clock() - min(times) if times else None

    def publish(self, result: SourceResult) -> bool:
        """Record a good refresh; rebuild and swap the snapshot only if its endpoints changed."""
        if not self._accept(result):
            return False
        self._swap(build_snapshot(*self._build_arguments()))
        return True

    async def publish_in_thread(self, result: SourceResult) -> bool:
        """As publish(), but the snapshot is built in a worker thread, so the event loop keeps
        answering DNS and HTTP while a large estate renders."""
        async with self._building:  # one build at a time: renderers keep state between builds
            previous = self._results.get(result.source)
            if not self._accept(result):
                return False
            try:
                snapshot = await asyncio.to_thread(build_snapshot, *self._build_arguments())
            except BaseException:
                # Not built, so not served: the next poll must not take it for "unchanged".
                if previous is None:
                    del self._results[result.source]
                else:
                    self._results[result.source] = previous
                raise
            self._swap(snapshot)
            return True

    def _accept(self, result: SourceResult) -> bool:
        """Note the good refresh; True when its endpoints differ and a new snapshot is due."""
        self._status[result.source] = SourceStatus(
            result.source, last_success_at=result.fetched_at, endpoints=len(result.endpoints), warnings=result.warnings
        )
        previous = self._results.get(result.source)
        self._results[result.source] = result
        # As sets: sources may list the same endpoints in another order (DiscoverInstances shuffles).
        unchanged = previous is not None and frozenset(previous.endpoints) == frozenset(result.endpoints)
        if self.current is not None and unchanged:
            self._notify()  # no new snapshot, but the source is fresh again
            return False
        return True

    def _build_arguments(self) -> tuple[list[SourceResult], int, float, Renderers, Snapshot | None]:
        # Taken on the event loop, so the worker thread sees one consistent state.
        return list(self._results.values()), self.generation + 1, self._clock(), self._renderers, self.current

    def _swap(self, snapshot: Snapshot) -> None:
        self.current = snapshot
        self._notify()

    def record_failure(self, source: SourceName, error: str) -> None:
        """Note a failed refresh; the source's last good result stays in the snapshot."""
        status = self._status[source]
        self._status[source] = replace(status, last_error=error, consecutive_failures=status.consecutive_failures + 1)
        self._notify()

    async def wait_for(self, generation: int, timeout: float | None) -> Snapshot | None:  # noqa: ASYNC109
        """Wait until a snapshot newer than `generation` is published; None on timeout (None: never)."""
        if await self.wait_until(lambda: self.generation > generation, timeout):
            return self.current
        return None

    async def wait_until(self, condition: Callable[[], bool], timeout: float | None) -> bool:  # noqa: ASYNC109
        """Wait until `condition()` holds after a publish or a failure; False on timeout."""
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

    def _notify(self) -> None:
        self._updated.set()
        self._updated = asyncio.Event()

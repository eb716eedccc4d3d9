"""What every AWS mechanism implements (a Source of Partitions), and helpers they share."""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Awaitable, Iterable, Sequence
from dataclasses import dataclass
from typing import Protocol, TypeVar

from discobridge.aws import ABANDONED, abandoning_unsent_calls
from discobridge.model import Endpoint, PartitionKey

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Refreshed:
    """A complete read of one partition: its endpoints, and problems that did not stop it (a
    configured cluster that does not exist), shown in /healthz and on the status page."""

    endpoints: tuple[Endpoint, ...]
    warnings: tuple[str, ...] = ()


class Progress:
    """Counts what a partition has learned for good (task definitions, hosts, described tasks),
    kept even when the refresh that learned it fails: a failure that made progress is a slow
    start, not a failing partition."""

    __slots__ = ("count",)

    def __init__(self) -> None:
        self.count = 0

    def add(self, learned: int = 1) -> None:
        self.count += learned


class Nudge:
    """Asks a partition's poller to refresh it now rather than at the next interval: what an
    event changed is then published through the one path every refresh takes."""

    __slots__ = ("_event",)

    def __init__(self) -> None:
        self._event = asyncio.Event()

    def __call__(self) -> None:
        self._event.set()

    async def wait(self, timeout: float) -> None:  # noqa: ASYNC109 - a sleep that a nudge cuts short
        """Sleep `timeout` seconds, or less if nudged (meanwhile or already)."""
        try:
            async with asyncio.timeout(timeout):
                await self._event.wait()
        except TimeoutError:
            pass
        self._event.clear()


class EventStatus:
    """Whether a source's change events are arriving, as its event feed last saw: written by
    the feed, read by the source's partitions to choose between reconciling and polling."""

    __slots__ = ("live_since", "problem")

    def __init__(self) -> None:
        self.live_since: float | None = None  # when the subscription last came up; None: down
        self.problem = ""  # why events are not flowing, for /healthz; "" when they are or are off


class Partition(Protocol):
    """One unit of refresh and failure (an ECS cluster, a Cloud Map namespace)."""

    @property
    def key(self) -> PartitionKey: ...

    @property
    def progress(self) -> Progress: ...

    @property
    def nudge(self) -> Nudge: ...

    async def refresh(self) -> Refreshed:
        """Read every endpoint of this partition, or raise: a partial result is never returned.
        The endpoints come in a stable order (the same data, the same tuple), so the store can
        tell an unchanged result without hashing the estate."""
        ...


class Source(Protocol):
    """Finds the partitions of one mechanism in one account and region."""

    @property
    def scope(self) -> str: ...  # model.scope_id(source, account, region)

    @property
    def label(self) -> str: ...  # what its listing is, for people: "ecs clusters in local/us-east-1"

    @property
    def dynamic(self) -> bool: ...  # False: the partitions are fixed by the config, listed once

    def known(self) -> Sequence[Partition]:
        """The partitions to refresh before (or without) a listing: configured or restored."""
        ...

    def adopt(self, key: PartitionKey) -> bool:
        """Take on a partition restored from a snapshot file; False if it is not this source's."""
        ...

    async def list_partitions(self) -> Sequence[Partition]:
        """Every partition as AWS lists it now; raise rather than list a partial set."""
        ...


# DescribeTasks, DescribeContainerInstances and EC2 DescribeInstances (by id) take at most 100
# items per call: https://docs.aws.amazon.com/AmazonECS/latest/APIReference/API_DescribeTasks.html
BATCH = 100


def batches(items: Sequence[T], size: int = BATCH) -> list[Sequence[T]]:
    """Split `items` into consecutive slices of at most `size`."""
    return [items[i : i + size] for i in range(0, len(items), size)]


async def gather_all(awaitables: Iterable[Awaitable[T]]) -> list[T]:
    """Run concurrently; on the first failure cancel the rest and raise that failure itself."""
    try:
        async with asyncio.TaskGroup() as group:
            tasks = [group.create_task(_as_coroutine(a)) for a in awaitables]
    except BaseExceptionGroup as failed:
        first = failed.exceptions[0]
        while isinstance(first, BaseExceptionGroup):
            first = first.exceptions[0]
        raise first from None
    return [task.result() for task in tasks]


async def gather_kept(awaitables: Iterable[Awaitable[T]]) -> list[T]:
    """Run concurrently, keeping what each call learns: after the first failure, the calls not
    sent yet are dropped (their budget given back) while those in flight finish, so no answer
    AWS already sent is thrown away. Then that first failure is raised."""
    failed = asyncio.Event()

    async def watched(awaitable: Awaitable[T]) -> T:
        try:
            return await awaitable
        except Exception:
            failed.set()
            raise

    pending = list(awaitables)
    with abandoning_unsent_calls(failed):
        tasks = [asyncio.ensure_future(watched(a)) for a in pending]  # each copies the context
    try:
        outcomes = await asyncio.gather(*tasks, return_exceptions=True)
    finally:
        for task in tasks:
            task.cancel()
        for awaitable in pending:  # cancelled before it began (at shutdown): close it quietly
            if inspect.iscoroutine(awaitable) and inspect.getcoroutinestate(awaitable) == inspect.CORO_CREATED:
                awaitable.close()
    errors = [o for o in outcomes if isinstance(o, BaseException)]
    if errors:
        first = next((e for e in errors if getattr(e, "code", "") != ABANDONED), errors[0])
        raise first
    return outcomes  # type: ignore[return-value]


async def _as_coroutine(awaitable: Awaitable[T]) -> T:
    return await awaitable

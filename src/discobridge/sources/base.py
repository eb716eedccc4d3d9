"""The Source protocol every AWS mechanism implements, and a fail-fast concurrent gather."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Iterable, Sequence
from typing import Protocol, TypeVar

from discobridge.model import Endpoint, SourceName

T = TypeVar("T")


class Source(Protocol):
    name: SourceName
    # Problems that did not stop the refresh (a configured namespace that does not exist), as of
    # the last refresh: shown in /healthz's detail and on the status page.
    warnings: tuple[str, ...]

    async def refresh(self) -> tuple[Endpoint, ...]:
        """Read every endpoint of this source, or raise: a partial result is never returned."""
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


async def _as_coroutine(awaitable: Awaitable[T]) -> T:
    return await awaitable

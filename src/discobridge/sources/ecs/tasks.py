"""One cluster's running tasks, kept across polls so a poll describes only what is new.

A running task's network bindings never change, so after the first poll DescribeTasks is called
only for ARNs not seen before, for ARNs that vanished from ListTasks (to confirm they stopped),
and for known tasks once per `health_refresh_s` (health is the one thing that changes), spread
over the interval rather than all at once. A task that vanishes from ListTasks is removed only
when ECS confirms it: DescribeTasks says it is no longer running (stopped tasks stay describable
for an hour) or reports it MISSING. Every DescribeTasks answer is applied as it returns, so a
poll that fails half-way keeps what it learned.
"""

from __future__ import annotations

import asyncio
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import structlog

from discobridge.aws import AwsClients
from discobridge.sources.base import Progress, batches, gather_kept
from discobridge.sources.ecs.fetch import fetch_task_arns, fetch_tasks
from discobridge.sources.ecs.parse import TaskFacts, task_facts

log = structlog.get_logger(__name__)

# DescribeTasks answers in flight per cluster. The budget allows far fewer calls per second than
# this many concurrent calls could make; more would only hold more 100-task answers in memory
# at once (a few MB each while botocore parses them).
DESCRIBE_CONCURRENCY = 4


@dataclass(frozen=True, slots=True)
class Reconciled:
    tasks: list[TaskFacts]
    dropped_too_many: bool  # the unconfirmed share of the cluster exceeded max_drop_fraction


class ClusterTasks:
    """The running tasks of one cluster as last confirmed by ECS."""

    def __init__(
        self, *, cluster: str, health_refresh_s: float, max_drop_fraction: float, clock: Callable[[], float]
    ) -> None:
        self._cluster = cluster
        self._health_refresh_s = health_refresh_s
        self._max_drop_fraction = max_drop_fraction
        self._clock = clock
        self._tasks: dict[str, TaskFacts] = {}
        self.revision = 0  # grows whenever a task is added, replaced or removed
        self._describing = asyncio.Semaphore(DESCRIBE_CONCURRENCY)
        self._due_at: dict[str, float] = {}  # when each known task is next described for its health

    @property
    def tasks(self) -> list[TaskFacts]:
        return list(self._tasks.values())

    def clear(self) -> None:
        self._tasks.clear()
        self._due_at.clear()
        self.revision += 1

    async def refresh(self, aws: AwsClients, progress: Progress) -> Reconciled:
        """List the cluster's tasks, describe what needs it, and reconcile with what was known."""
        now = self._clock()
        known_before = len(self._tasks)
        listed = await fetch_task_arns(aws, self._cluster)
        listed_set = set(listed)
        vanished = [arn for arn in self._tasks if arn not in listed_set]
        wanted = [arn for arn in listed if arn not in self._tasks or self._due_at.get(arn, 0.0) <= now]
        confirmed_gone: set[str] = set()
        await gather_kept(self._describe(aws, batch, confirmed_gone, progress) for batch in batches(wanted + vanished))
        unconfirmed = [arn for arn in vanished if arn not in confirmed_gone]
        too_many = bool(unconfirmed) and len(unconfirmed) > self._max_drop_fraction * known_before
        if too_many:
            log.warning(
                "task_list_shrank_unconfirmed",
                source="ecs",
                cluster=self._cluster,
                known=known_before,
                listed=len(listed),
                kept=len(unconfirmed),
            )
        return Reconciled(list(self._tasks.values()), too_many)

    async def _describe(
        self,
        aws: AwsClients,
        arns: Sequence[str],
        confirmed_gone: set[str],
        progress: Progress,
    ) -> None:
        """Describe one batch and apply it at once: kept even if another batch fails."""
        async with self._describing:
            described, missing = await fetch_tasks(aws, self._cluster, arns)
        now = self._clock()
        learned = 0  # tasks not known before: a health re-describe of a known one is no progress
        for raw in described:
            facts = task_facts(raw)
            if facts is None:
                continue
            learned += facts.arn not in self._tasks
            if facts.running:
                self._keep(facts, now)
            else:
                self._forget(facts.arn)
                confirmed_gone.add(facts.arn)
        for arn in missing:
            self._forget(arn)
            confirmed_gone.add(arn)
        progress.add(learned)

    def _keep(self, facts: TaskFacts, now: float) -> None:
        known = self._tasks.get(facts.arn)
        if known is not None and facts.version and known.version > facts.version:
            return  # an older answer than what we hold: never go back in time
        if known != facts:
            self._tasks[facts.arn] = facts
            self.revision += 1
        # Each task's next health refresh is staggered by its ARN, so known tasks are described
        # a few at a time over the interval instead of all together.
        self._due_at[facts.arn] = now + self._health_refresh_s * (0.5 + _fraction(facts.arn) / 2)

    def _forget(self, arn: str) -> None:
        if self._tasks.pop(arn, None) is not None:
            self.revision += 1
        self._due_at.pop(arn, None)


def _fraction(arn: str) -> float:
    return zlib.crc32(arn.encode()) / 0xFFFFFFFF

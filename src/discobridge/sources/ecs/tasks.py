"""One cluster's running tasks, kept across polls so a poll describes only what is new.

A running task's network bindings never change, so after the first poll DescribeTasks is called
only for ARNs not seen before, for ARNs that vanished from ListTasks (to confirm they stopped),
and for known tasks once per `health_refresh_s` (health is the one thing that changes), spread
over the interval rather than all at once. A task that vanishes from ListTasks is removed only
when ECS confirms it: DescribeTasks says it is no longer running (stopped tasks stay describable
for an hour) or reports it MISSING. Every DescribeTasks answer is applied as it returns, so a
poll that fails half-way keeps what it learned.

ECS events feed the same set (`apply`). A task ECS has reported stopped never comes back: task
ARNs are never reused, so a RUNNING answer or event that arrives later is an older one, whatever
its order of delivery. Those ARNs are remembered for as long as ECS still describes stopped tasks.
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
# ECS describes a stopped task for about an hour; a stale RUNNING report cannot be older.
STOPPED_KEPT_S = 3600.0


HealthCheck = Callable[[TaskFacts], bool]


def _always(task: TaskFacts) -> bool:
    return True


@dataclass(frozen=True, slots=True)
class Reconciled:
    tasks: list[TaskFacts]
    dropped_too_many: bool  # the unconfirmed share of the cluster exceeded max_drop_fraction
    changes: int = 0  # tasks this read added or removed (what events, if on, should have said)


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
        self._stopped: dict[str, float] = {}  # tasks ECS reported stopped, and when

    @property
    def tasks(self) -> list[TaskFacts]:
        return list(self._tasks.values())

    def clear(self) -> None:
        self._tasks.clear()
        self._due_at.clear()
        self._stopped.clear()
        self.revision += 1

    async def refresh(self, aws: AwsClients, progress: Progress, needs_health: HealthCheck = _always) -> Reconciled:
        """List the cluster's tasks, describe what needs it, and reconcile with what was known.
        Known tasks are described again for their health only where `needs_health` says so."""
        now = self._clock()
        self._sweep_stopped(now)
        known_before = len(self._tasks)
        listed = await fetch_task_arns(aws, self._cluster)
        listed_set = set(listed)
        vanished = [arn for arn in self._tasks if arn not in listed_set]
        wanted = [
            arn
            for arn in listed
            if arn not in self._stopped and (arn not in self._tasks or self._due(arn, now, needs_health))
        ]
        confirmed_gone: set[str] = set()
        added: set[str] = set()
        await gather_kept(
            self._describe(aws, batch, confirmed_gone, progress, added) for batch in batches(wanted + vanished)
        )
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
        changes = len(added) + len(confirmed_gone.intersection(vanished))
        return Reconciled(list(self._tasks.values()), too_many, changes)

    async def refresh_health(
        self, aws: AwsClients, progress: Progress, needs_health: HealthCheck = _always
    ) -> Reconciled:
        """Describe only the known tasks due for a health refresh (no listing: events say what
        started and stopped); usually no call at all."""
        now = self._clock()
        self._sweep_stopped(now)
        due = [arn for arn in self._tasks if self._due(arn, now, needs_health)]
        await gather_kept(self._describe(aws, batch, set(), progress, set()) for batch in batches(due))
        return Reconciled(list(self._tasks.values()), dropped_too_many=False)

    def _due(self, arn: str, now: float, needs_health: HealthCheck) -> bool:
        return self._due_at.get(arn, 0.0) <= now and needs_health(self._tasks[arn])

    def apply(self, facts: TaskFacts) -> bool:
        """Apply what an event says of one task; True when that changed the set. Older news
        than what is known (a lower version, or a RUNNING task already reported stopped) is
        dropped, so duplicates and reordering change nothing."""
        revision = self.revision
        known = self._tasks.get(facts.arn)
        if facts.stopping:
            self._stop(facts.arn)
        elif known is None or facts.version > known.version:
            if facts.running:
                self._keep(facts, self._clock())
            else:
                self._forget(facts.arn)  # not serving (yet): not a stop, it may run later
        return self.revision != revision

    async def _describe(
        self,
        aws: AwsClients,
        arns: Sequence[str],
        confirmed_gone: set[str],
        progress: Progress,
        added: set[str],
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
            if facts.running:
                new = facts.arn not in self._tasks
                if self._keep(facts, now) and new:
                    learned += 1
                    added.add(facts.arn)
            elif facts.stopping:
                self._stop(facts.arn)
                confirmed_gone.add(facts.arn)
            elif self._not_newer_than_known(facts):
                continue  # an answer older than an event that said RUNNING: not a stop
            else:
                self._forget(facts.arn)
                confirmed_gone.add(facts.arn)
        for arn in missing:
            self._forget(arn)
            confirmed_gone.add(arn)
        progress.add(learned)

    def _not_newer_than_known(self, facts: TaskFacts) -> bool:
        known = self._tasks.get(facts.arn)
        return known is not None and bool(facts.version) and facts.version < known.version

    def _keep(self, facts: TaskFacts, now: float) -> bool:
        """Hold `facts` as the task's state unless they are older than what is known; True when held."""
        known = self._tasks.get(facts.arn)
        if facts.arn in self._stopped:
            return False  # reported stopped before: this answer is older, never a resurrection
        if known is not None and facts.version and known.version > facts.version:
            return False  # an older answer than what we hold: never go back in time
        if known != facts:
            self._tasks[facts.arn] = facts
            self.revision += 1
        # Each task's next health refresh is staggered by its ARN, so known tasks are described
        # a few at a time over the interval instead of all together.
        self._due_at[facts.arn] = now + self._health_refresh_s * (0.5 + _fraction(facts.arn) / 2)
        return True

    def _stop(self, arn: str) -> None:
        self._stopped[arn] = self._clock()
        self._forget(arn)

    def _forget(self, arn: str) -> None:
        if self._tasks.pop(arn, None) is not None:
            self.revision += 1
        self._due_at.pop(arn, None)

    def _sweep_stopped(self, now: float) -> None:
        if self._stopped and now - next(iter(self._stopped.values())) > STOPPED_KEPT_S:
            self._stopped = {arn: at for arn, at in self._stopped.items() if now - at <= STOPPED_KEPT_S}


def _fraction(arn: str) -> float:
    return zlib.crc32(arn.encode()) / 0xFFFFFFFF

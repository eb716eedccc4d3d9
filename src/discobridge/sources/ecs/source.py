"""The ECS source of one account and region: its clusters are its partitions.

With `[ecs] clusters = ["*"]` the clusters are listed (ListClusters) every poll; a cluster that
disappears is dropped only once DescribeClusters confirms it is gone, never on a failed call. A
configured cluster that does not exist is ECS's answer, not a fault: its partition is empty and
a warning names it.

With ECS events on, events are a second feed into the same partitions: applied as they arrive
(then the partition's poller is nudged to publish), while the full poll becomes a reconciliation
every `[events] reconcile_s` and the refreshes in between only re-describe tasks for their
health. Whenever events stop flowing, the next refresh is a full poll again.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Sequence
from typing import Any

import structlog

from discobridge.aws import AwsCallError, AwsClients
from discobridge.metrics import Metrics
from discobridge.model import Endpoint, PartitionKey, scope_id
from discobridge.sources.base import EventStatus, Nudge, Progress, Refreshed
from discobridge.sources.ecs.cache import TOUCH_EVERY_S, EcsCache
from discobridge.sources.ecs.events import IGNORED, InstanceChange, TaskChange, read_event
from discobridge.sources.ecs.fetch import fetch_cluster_arns, fetch_cluster_statuses, fetch_draining_instances
from discobridge.sources.ecs.parse import SOURCE, DefinitionFacts, HostInfo, TaskFacts, last_segment, parse_task
from discobridge.sources.ecs.tasks import ClusterTasks

log = structlog.get_logger(__name__)

_GONE = frozenset({"MISSING", "INACTIVE"})
_Parsed = tuple[TaskFacts, DefinitionFacts | None, HostInfo | None, bool, Endpoint | str | None]


class ClusterPartition:
    """One ECS cluster: its running tasks, read incrementally, as endpoints."""

    def __init__(
        self,
        *,
        key: PartitionKey,
        cluster: str,
        aws: AwsClients,
        cache: EcsCache,
        metrics: Metrics,
        health_refresh_s: float,
        max_drop_fraction: float,
        clock: Callable[[], float],
        events: EventStatus | None = None,
        reconcile_s: float = 300.0,
    ) -> None:
        self.key = key
        self.progress = Progress()
        self.nudge = Nudge()
        self._events = events
        self._reconcile_s = reconcile_s
        self._reconciled_at: float | None = None  # when the last full poll that succeeded began
        self._draining: set[str] = set()
        self._instance_versions: dict[str, int] = {}  # container instance -> last event's version
        # Draining changes events applied while a listing of draining instances is in flight:
        # laid over its answer, which may predate them.
        self._instance_changes: dict[str, bool] | None = None
        self._cluster = cluster  # a name or an ARN: ECS takes either
        self._aws = aws
        self._cache = cache
        self._metrics = metrics
        self._tasks = ClusterTasks(
            cluster=cluster, health_refresh_s=health_refresh_s, max_drop_fraction=max_drop_fraction, clock=clock
        )
        self._parsed: dict[str, _Parsed] = {}
        self._endpoints: tuple[Endpoint, ...] = ()
        self._missing = False
        self._clock = clock
        # What the last parse saw: when nothing of it changed, the endpoints are the same.
        self._parsed_from: tuple[int, int, frozenset[str]] | None = None
        self._touched_at = -float("inf")

    @property
    def reconciled_at(self) -> float | None:
        """When the last full poll that succeeded began (None: none yet)."""
        return self._reconciled_at

    async def refresh(self) -> Refreshed:
        live_since = self._events.live_since if self._events is not None else None
        started = self._clock()
        full = (
            live_since is None
            or self._reconciled_at is None
            or self._reconciled_at < live_since  # subscribe first, then poll: nothing falls between
            or started - self._reconciled_at >= self._reconcile_s
        )
        try:
            if full:
                reconciled = await self._tasks.refresh(self._aws, self.progress, self._health_checked)
                self._instance_changes = {}
                try:
                    listed = await fetch_draining_instances(self._aws, self._cluster)
                    for arn, draining in self._instance_changes.items():
                        (listed.add if draining else listed.discard)(arn)
                    self._draining = listed
                finally:
                    self._instance_changes = None
            else:
                reconciled = await self._tasks.refresh_health(self._aws, self.progress, self._health_checked)
        except AwsCallError as exc:
            if exc.code == "ClusterNotFoundException" and await self._confirmed_missing():
                return self._gone()
            raise
        self._missing = False
        if full:
            if live_since is not None and self._reconciled_at is not None and self._reconciled_at >= live_since:
                self._count_missed(reconciled.changes)
            self._reconciled_at = started
        if reconciled.dropped_too_many:
            self._metrics.source_list_shrinks.labels(SOURCE).inc()
        await self._cache.learn(self._aws, self._cluster, reconciled.tasks, self.progress)
        problem = self._events.problem if self._events is not None else ""
        return Refreshed(self._parse(reconciled.tasks, self._draining), (problem,) if problem else ())

    def _health_checked(self, task: TaskFacts) -> bool:
        """Whether the task's health can change (a container has a health check, or its
        definition is not known yet): only then is it described again for it."""
        definition = self._cache.definition(task.definition_arn)
        return definition is None or definition.health_checked

    def _count_missed(self, changes: int) -> None:
        """A reconciling poll (events flowing all along) found changes no event announced."""
        if changes:
            self._metrics.events_missed.labels(self.key.id).inc(changes)
            log.warning("events_missed", partition=self.key.id, changes=changes)

    async def apply(self, changes: Sequence[TaskChange | InstanceChange]) -> list[str]:
        """Apply events to this cluster, in order; each one's outcome ("applied", or "stale" when
        it told nothing newer than what is known). Describes what a new task needs that the
        caches lack; if that fails the next refresh tries again, and the event stays applied."""
        outcomes: list[str] = []
        started: list[TaskFacts] = []
        for change in changes:
            if isinstance(change, InstanceChange):
                applied = change.version > self._instance_versions.get(change.arn, 0)
                if applied:
                    self._instance_versions[change.arn] = change.version
                    if change.draining:
                        self._draining.add(change.arn)
                    else:
                        self._draining.discard(change.arn)
                    if self._instance_changes is not None:
                        self._instance_changes[change.arn] = change.draining
            else:
                applied = self._tasks.apply(change.task)
                if applied and change.task.running:
                    started.append(change.task)
            outcomes.append("applied" if applied else "stale")
        if started:
            try:
                await self._cache.learn(self._aws, self._cluster, started, self.progress)
            except AwsCallError as exc:
                log.warning("events_describe_failed", partition=self.key.id, error=str(exc))
        if "applied" in outcomes:
            self.nudge()
        return outcomes

    async def _confirmed_missing(self) -> bool:
        """ListTasks said the cluster does not exist: believe it only if DescribeClusters agrees."""
        statuses = await fetch_cluster_statuses(self._aws, [self._cluster])
        return statuses[self._cluster] in _GONE

    def _gone(self) -> Refreshed:
        warning = f"ECS cluster {self.key.name!r} does not exist in {self.key.account}/{self.key.region}"
        if not self._missing:  # once per change, not once per poll
            log.warning("ecs_cluster_not_found", partition=self.key.id, error=warning)
        self._missing = True
        self._tasks.clear()
        self._draining.clear()
        self._parsed.clear()
        self._endpoints = ()
        return Refreshed((), (warning,))

    def _parse(self, tasks: Sequence[TaskFacts], draining: set[str]) -> tuple[Endpoint, ...]:
        """Each task's endpoint, re-parsed only when the task or what it depends on changed; when
        nothing did (a quiet poll of a large cluster), not walked at all."""
        seen = (self._tasks.revision, self._cache.revision, frozenset(draining))
        now = self._clock()
        if seen == self._parsed_from and now - self._touched_at < TOUCH_EVERY_S:
            return self._endpoints
        self._parsed_from, self._touched_at = seen, now
        parsed: dict[str, _Parsed] = {}
        endpoints: list[Endpoint] = []
        skipped: Counter[str] = Counter()
        for task in tasks:
            definition = self._cache.definition(task.definition_arn)
            host = self._cache.host(task.container_instance) if task.container_instance else None
            is_draining = task.container_instance in draining
            before = self._parsed.get(task.arn)
            if before is not None and before[:4] == (task, definition, host, is_draining):
                entry = before
            else:
                result = (
                    parse_task(task, definition, host, is_draining, account=self.key.account, region=self.key.region)
                    if definition
                    else "no_task_definition"
                )
                entry = (task, definition, host, is_draining, result)
            parsed[task.arn] = entry
            if isinstance(entry[4], Endpoint):
                endpoints.append(entry[4])
            elif entry[4] is not None:
                skipped[entry[4]] += 1
                log.debug("task_skipped", partition=self.key.id, task=task.arn, reason=entry[4])
        for reason, count in skipped.items():
            self._metrics.source_skipped_records.labels(SOURCE, reason).inc(count)
        self._parsed = parsed
        if len(endpoints) != len(self._endpoints) or any(
            a is not b for a, b in zip(endpoints, self._endpoints, strict=True)
        ):
            self._endpoints = tuple(endpoints)
        return self._endpoints


class EcsSource:
    """The clusters of one account and region, configured by name or listed with ["*"]."""

    def __init__(
        self,
        *,
        aws: AwsClients,
        account: str,
        region: str,
        clusters: Sequence[str],
        cache: EcsCache,
        metrics: Metrics,
        health_refresh_s: float = 60.0,
        max_drop_fraction: float = 0.5,
        clock: Callable[[], float] = time.monotonic,
        events: bool = False,
        reconcile_s: float = 300.0,
        account_id: str | None = None,
        forwarded: bool = False,
    ) -> None:
        self._aws = aws
        self._account, self._region = account, region
        # The 12 digits that tell this account's events from others' on the one bus they share:
        # a role's, or the local account's own, learned (GetCallerIdentity) before events flow.
        self._account_id = account_id
        # Forwarded from another account or region's bus: until one of its events arrives, no
        # rule is known to forward them, so its clusters keep polling.
        self._forwarded = forwarded
        self._feed_since: float | None = None
        self.events = EventStatus() if events else None
        self._reconcile_s = reconcile_s
        self.scope = scope_id(SOURCE, account, region)
        self.label = f"the ECS cluster list of {account}/{region}"
        self.dynamic = tuple(clusters) == ("*",)
        self._cache = cache
        self._metrics = metrics
        self._health_refresh_s = health_refresh_s
        self._max_drop_fraction = max_drop_fraction
        self._clock = clock
        self._partitions: dict[str, ClusterPartition] = {}
        if not self.dynamic:
            for cluster in clusters:
                self._partition(cluster)

    def known(self) -> Sequence[ClusterPartition]:
        return list(self._partitions.values())

    def adopt(self, key: PartitionKey) -> bool:
        if key.scope != self.scope:
            return False
        if self.dynamic:
            self._partition(key.name)
        return key.name in self._partitions

    async def list_partitions(self) -> Sequence[ClusterPartition]:
        if not self.dynamic:
            return self.known()
        listed = {last_segment(arn): arn for arn in await fetch_cluster_arns(self._aws)}
        vanished = [name for name in self._partitions if name not in listed]
        if vanished:
            statuses = await fetch_cluster_statuses(self._aws, vanished)
            for name in vanished:
                if statuses[name] in _GONE:
                    log.info("ecs_cluster_removed", partition=self._partitions[name].key.id, status=statuses[name])
                    del self._partitions[name]
        for name, arn in listed.items():
            self._partition(name, arn)
        return self.known()

    async def prepare_for_events(self) -> None:
        if self._account_id is None:
            identity = await self._aws.call("sts", "GetCallerIdentity")
            self._account_id = str(identity["Account"])

    def events_up(self, since: float) -> None:
        self._feed_since = since
        if not self._forwarded:
            self._events_live(since)

    def events_down(self, problem: str) -> None:
        self._feed_since = None
        if self.events is not None:
            self.events.live_since, self.events.problem = None, problem
        self.nudge_all()

    def _events_live(self, since: float) -> None:
        if self.events is not None:
            self.events.live_since, self.events.problem = since, ""
        self.nudge_all()  # one full poll now: what came before `since` is read, not awaited

    async def apply_events(self, events: Sequence[Any]) -> list[str]:
        """Apply a batch of decoded events; each one's outcome, in order. Events of clusters
        this source does not read (or of another account or region) are ignored."""
        outcomes: list[str] = []
        routed: dict[str, list[tuple[int, TaskChange | InstanceChange]]] = {}
        for event in events:
            change = read_event(event)
            if (
                isinstance(change, str)
                or change.region != self._region
                or change.account_id != self._account_id
                or change.cluster not in self._partitions
            ):
                outcomes.append(change if isinstance(change, str) else IGNORED)
                continue
            routed.setdefault(change.cluster, []).append((len(outcomes), change))
            outcomes.append("")
        if routed and self._forwarded and self._feed_since is not None and self.events and not self.events.live_since:
            self._events_live(self._clock())  # the first forwarded event: a rule does forward them
        for cluster, items in routed.items():
            applied = await self._partitions[cluster].apply([change for _, change in items])
            for (index, _), outcome in zip(items, applied, strict=True):
                outcomes[index] = outcome
        return outcomes

    def nudge_all(self) -> None:
        """Every partition refreshes now (events just came up or went down)."""
        for partition in self._partitions.values():
            partition.nudge()

    def _partition(self, cluster: str, reference: str | None = None) -> ClusterPartition:
        name = last_segment(cluster)
        found = self._partitions.get(name)
        if found is None:
            found = self._partitions[name] = ClusterPartition(
                key=PartitionKey(SOURCE, self._account, self._region, "cluster", name),
                cluster=reference or cluster,
                aws=self._aws,
                cache=self._cache,
                metrics=self._metrics,
                health_refresh_s=self._health_refresh_s,
                max_drop_fraction=self._max_drop_fraction,
                clock=self._clock,
                events=self.events,
                reconcile_s=self._reconcile_s,
            )
        return found

"""One cluster's running tasks, kept across polls so a poll describes only what is new.

A running task's network bindings never change, so after the first poll DescribeTasks is called
only for ARNs not seen before, for ARNs that vanished from ListTasks (to confirm they stopped),
and for every known task once per `health_refresh_s` (health is the one thing that changes). A
task that vanishes from ListTasks is removed only when ECS confirms it: DescribeTasks says it is
no longer running (stopped tasks stay describable for an hour) or reports it MISSING.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import structlog

from discobridge.aws import AwsClients
from discobridge.sources.base import batches, gather_all
from discobridge.sources.ecs_parse import is_running

log = structlog.get_logger(__name__)


async def fetch_task_arns(aws: AwsClients, cluster: str) -> list[str]:
    return await aws.collect("ecs", "ListTasks", "taskArns", "nextToken", cluster=cluster, desiredStatus="RUNNING")


async def fetch_tasks(aws: AwsClients, cluster: str, arns: Sequence[str]) -> tuple[dict[str, dict[str, Any]], set[str]]:
    """Described tasks by ARN, and the ARNs ECS reports MISSING (gone, or never existed)."""
    responses = await gather_all(
        aws.call("ecs", "DescribeTasks", cluster=cluster, tasks=list(batch)) for batch in batches(arns)
    )
    tasks = {task["taskArn"]: task for response in responses for task in response.get("tasks", [])}
    missing = {
        failure.get("arn", "")
        for response in responses
        for failure in response.get("failures", [])
        if failure.get("reason") == "MISSING"
    }
    return tasks, missing


@dataclass(frozen=True, slots=True)
class Reconciled:
    tasks: list[dict[str, Any]]
    dropped_too_many: bool  # the unconfirmed share of the cluster exceeded max_drop_fraction


class ClusterTasks:
    """The running tasks of one cluster as of the last successful poll."""

    def __init__(self, *, cluster: str, health_refresh_s: float, max_drop_fraction: float, clock: Callable[[], float]):
        self._cluster = cluster
        self._health_refresh_s = health_refresh_s
        self._max_drop_fraction = max_drop_fraction
        self._clock = clock
        self._tasks: dict[str, dict[str, Any]] = {}
        self._described_all_at = -math.inf

    async def refresh(self, aws: AwsClients) -> Reconciled:
        """List the cluster's tasks, describe what needs it, and reconcile with what was known."""
        now = self._clock()
        listed = await fetch_task_arns(aws, self._cluster)
        known = self._tasks
        describe_all = now - self._described_all_at >= self._health_refresh_s
        listed_set = set(listed)
        vanished = [arn for arn in known if arn not in listed_set]
        wanted = (listed if describe_all else [arn for arn in listed if arn not in known]) + vanished
        described, missing = await fetch_tasks(aws, self._cluster, wanted) if wanted else ({}, set())
        current: dict[str, dict[str, Any]] = {}
        for arn in listed:
            task = described.get(arn) or known.get(arn)
            if task is not None and is_running(task):
                current[arn] = task
        unconfirmed = 0
        for arn in vanished:
            task = described.get(arn)
            if arn not in missing and (task is None or is_running(task)):
                current[arn] = task or known[arn]  # ECS has not confirmed it stopped: keep it
                unconfirmed += 1
        too_many = bool(known) and unconfirmed > self._max_drop_fraction * len(known)
        if too_many:
            log.warning(
                "task_list_shrank_unconfirmed",
                source="ecs",
                cluster=self._cluster,
                known=len(known),
                listed=len(listed),
                kept=unconfirmed,
            )
        self._tasks = current
        if describe_all:
            self._described_all_at = now
        return Reconciled(list(current.values()), too_many)

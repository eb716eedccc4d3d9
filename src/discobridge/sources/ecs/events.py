"""Pure reading of ECS's EventBridge events: "ECS Task State Change" (its `detail` is the task
as DescribeTasks returns it, timestamps as ISO strings) and "ECS Container Instance State Change".

Delivery is at least once and in no particular order; `version` (the same counter DescribeTasks
reports) orders them, which the cluster's task set enforces.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from discobridge.sources.ecs.parse import TaskFacts, last_segment, task_facts

TASK_CHANGE = "ECS Task State Change"
INSTANCE_CHANGE = "ECS Container Instance State Change"
# Outcomes that are not a change to apply. "ignored": an event of another kind or place, which
# a shared bus may well carry; "malformed": one that claims to be ECS's but cannot be read.
IGNORED, MALFORMED = "ignored", "malformed"


@dataclass(frozen=True, slots=True)
class TaskChange:
    account_id: str  # the 12 digits of the cluster's ARN: events of many accounts share a bus
    region: str
    cluster: str  # the cluster's name
    task: TaskFacts


@dataclass(frozen=True, slots=True)
class InstanceChange:
    account_id: str
    region: str
    cluster: str
    arn: str  # the container instance
    draining: bool
    version: int


def read_event(event: Any) -> TaskChange | InstanceChange | str:
    """The change an event announces, or why it is none (IGNORED, MALFORMED)."""
    if not isinstance(event, Mapping) or event.get("source") != "aws.ecs":
        return IGNORED
    detail, region = event.get("detail"), event.get("region")
    kind = event.get("detail-type")
    if kind not in (TASK_CHANGE, INSTANCE_CHANGE):
        return IGNORED
    if not isinstance(detail, Mapping) or not isinstance(region, str) or not region:
        return MALFORMED
    cluster = detail.get("clusterArn")
    if not isinstance(cluster, str) or not cluster.startswith("arn:") or cluster.count(":") < 5:
        return MALFORMED
    account_id = cluster.split(":")[4]
    if kind == TASK_CHANGE:
        facts = task_facts(detail)
        if facts is None or not facts.version:
            return MALFORMED  # without a version an event cannot be ordered: the poll has it
        return TaskChange(account_id, region, last_segment(cluster), facts)
    arn, status, version = detail.get("containerInstanceArn"), detail.get("status"), _version(detail.get("version"))
    if not isinstance(arn, str) or not arn or not isinstance(status, str) or not version:
        return MALFORMED
    return InstanceChange(account_id, region, last_segment(cluster), arn, status == "DRAINING", version)


def _version(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0

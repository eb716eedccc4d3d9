"""What EventBridge does with ECS's events, in the fake AWS: every change to a task or a container
instance becomes an "ECS Task State Change" or "ECS Container Instance State Change" event (the
envelope and `detail` as the AWS docs show them: the task as DescribeTasks returns it, with ISO
timestamps and `eni` attachments), published to the SNS topics it is routed to, as a rule with an
SNS target would. Tests can drop, duplicate, hold back and reorder what is published.

moto's ECS emits no events itself; `moto_ext` calls `BUS` wherever ECS state changes.
"""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

from moto.sns.models import sns_backends

TASK_CHANGE = "ECS Task State Change"
INSTANCE_CHANGE = "ECS Container Instance State Change"


class EcsEventBus:
    """Routes ECS events of an account and region to SNS topics, with faults on demand."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._routes: dict[tuple[str, str], list[str]] = {}
        self._drop = 0
        self._duplicate = 0
        self._held: list[tuple[str, str, str]] | None = None
        self.published = 0  # events handed to SNS (a duplicate counts twice)
        self.dropped = 0

    def route(self, account: str, region: str, topic_arn: str) -> None:
        with self._lock:
            self._routes.setdefault((account, region), []).append(topic_arn)

    def clear(self) -> None:
        with self._lock:
            self._routes.clear()
            self._drop = self._duplicate = self.published = self.dropped = 0
            self._held = None

    def drop_next(self, count: int = 1) -> None:
        """The next `count` events are lost (EventBridge delivers best effort)."""
        with self._lock:
            self._drop += count

    def duplicate_next(self, count: int = 1) -> None:
        """The next `count` events are delivered twice (delivery is at least once)."""
        with self._lock:
            self._duplicate += count

    @contextmanager
    def held(self, *, reverse: bool = False) -> Iterator[None]:
        """Events inside the block are delivered when it ends (late), in reverse with `reverse`."""
        with self._lock:
            self._held = []
        try:
            yield
        finally:
            with self._lock:
                held, self._held = self._held or [], None
            for account, region, message in reversed(held) if reverse else held:
                self._publish(account, region, message)

    # ---- called by moto_ext where ECS state changes ----------------------------------------
    def task_changed(self, task: Any) -> None:
        detail = {
            "taskArn": task.task_arn,
            "clusterArn": task.cluster_arn,
            "containerInstanceArn": task.container_instance_arn,
            "taskDefinitionArn": task.task_definition_arn,
            "group": task.group,
            "lastStatus": task.last_status,
            "desiredStatus": task.desired_status,
            "healthStatus": getattr(task, "health_status", "UNKNOWN"),
            "availabilityZone": getattr(task, "availability_zone", ""),
            "launchType": task.launch_type or "EC2",
            "version": task.version,
            "containers": [dict(c) for c in task.containers if isinstance(c, dict)],
            "attachments": [{**a, "type": "eni"} for a in task.attachments],
            "createdAt": _iso(getattr(task, "created_at", None)),
            "startedAt": _iso(getattr(task, "started_at", None)),
            "stoppedAt": _iso(getattr(task, "stopped_at", None)),
            "stoppedReason": task.stopped_reason,
            "updatedAt": _iso(datetime.now(UTC)),
        }
        self._emit(task._account_id, task.region_name, TASK_CHANGE, task.task_arn, detail)

    def instance_changed(self, instance: Any, cluster_arn: str, account: str, region: str) -> None:
        detail = {
            "containerInstanceArn": instance.container_instance_arn,
            "ec2InstanceId": instance.ec2_instance_id,
            "clusterArn": cluster_arn,
            "status": instance.status,
            "agentConnected": True,
            "version": instance.version,
            "updatedAt": _iso(datetime.now(UTC)),
        }
        self._emit(account, region, INSTANCE_CHANGE, instance.container_instance_arn, detail)

    def _emit(self, account: str, region: str, kind: str, resource: str, detail: dict[str, Any]) -> None:
        envelope = {
            "version": "0",
            "id": str(uuid.uuid4()),
            "detail-type": kind,
            "source": "aws.ecs",
            "account": account,
            "time": _iso(datetime.now(UTC)),
            "region": region,
            "resources": [resource],
            "detail": {k: v for k, v in detail.items() if v is not None},
        }
        message = json.dumps(envelope)
        with self._lock:
            if not self._routes.get((account, region)):
                return
            if self._drop:
                self._drop -= 1
                self.dropped += 1
                return
            copies = 2 if self._duplicate else 1
            self._duplicate = max(0, self._duplicate - 1)
            if self._held is not None:
                self._held += [(account, region, message)] * copies
                return
        for _ in range(copies):
            self._publish(account, region, message)

    def _publish(self, account: str, region: str, message: str) -> None:
        with self._lock:
            topics = list(self._routes.get((account, region), ()))
            self.published += 1
        for topic in topics:  # the topic's own account and region: events may cross to them
            _, _, _, topic_region, topic_account, _ = topic.split(":")
            sns_backends[topic_account][topic_region].publish(message=message, arn=topic)


def _iso(value: Any) -> str | None:
    if isinstance(value, datetime):
        return value.isoformat().replace("+00:00", "Z")
    if isinstance(value, int | float):
        return datetime.fromtimestamp(value, UTC).isoformat().replace("+00:00", "Z")
    return None


BUS = EcsEventBus()

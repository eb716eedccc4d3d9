"""ECS source: reads clusters, tasks, container instances, EC2 hosts and task definitions."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from typing import Any, TypeVar

import structlog

from discobridge.aws import AwsClients
from discobridge.metrics import Metrics
from discobridge.model import Endpoint, SourceName
from discobridge.sources.base import batches, gather_all
from discobridge.sources.ecs_parse import HostInfo, parse_task
from discobridge.sources.ecs_tasks import ClusterTasks

log = structlog.get_logger(__name__)

T = TypeVar("T")


async def fetch_cluster_arns(aws: AwsClients) -> list[str]:
    return await aws.collect("ecs", "ListClusters", "clusterArns", "nextToken")


async def fetch_draining_instances(aws: AwsClients, cluster: str) -> set[str]:
    # Container-instance status changes over time, unlike its EC2 id, so it is listed each poll:
    # one call per cluster instead of re-describing every cached instance.
    arns = await aws.collect(
        "ecs", "ListContainerInstances", "containerInstanceArns", "nextToken", cluster=cluster, status="DRAINING"
    )
    return set(arns)


async def _describe_in_batches(
    aws: AwsClients, operation: str, ids_param: str, key: str, ids: Sequence[str], **params: Any
) -> list[dict[str, Any]]:
    responses = await gather_all(
        aws.call("ecs", operation, **params, **{ids_param: list(batch)}) for batch in batches(ids)
    )
    return [item for response in responses for item in response.get(key, [])]


async def fetch_container_instances(aws: AwsClients, cluster: str, arns: Sequence[str]) -> list[dict[str, Any]]:
    return await _describe_in_batches(
        aws, "DescribeContainerInstances", "containerInstances", "containerInstances", arns, cluster=cluster
    )


async def fetch_ec2_instances(aws: AwsClients, instance_ids: Sequence[str]) -> list[dict[str, Any]]:
    # Always by InstanceIds: unfiltered DescribeInstances sits in a lower EC2 throttle class.
    responses = await gather_all(
        aws.call("ec2", "DescribeInstances", InstanceIds=list(batch)) for batch in batches(instance_ids)
    )
    return [
        instance
        for response in responses
        for reservation in response.get("Reservations", [])
        for instance in reservation.get("Instances", [])
    ]


async def fetch_task_definition(aws: AwsClients, arn: str) -> dict[str, Any]:
    response = await aws.call("ecs", "DescribeTaskDefinition", taskDefinition=arn)
    definition: dict[str, Any] = response["taskDefinition"]
    return definition


class EcsSource:
    """Polls ECS for running tasks; caches what AWS never changes (hosts, task definitions)."""

    name = SourceName.ECS
    warnings: tuple[str, ...] = ()

    def __init__(
        self,
        *,
        aws: AwsClients,
        clusters: Sequence[str],
        metrics: Metrics,
        health_refresh_s: float = 60.0,
        max_drop_fraction: float = 0.5,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._aws = aws
        self._clusters = tuple(clusters)
        self._metrics = metrics
        self._tracked: dict[str, ClusterTasks] = {}
        self._health_refresh_s = health_refresh_s
        self._max_drop_fraction = max_drop_fraction
        self._clock = clock
        # A container instance's EC2 id, an instance's primary private IP and a task-definition
        # revision are fixed for life: described once, kept while something still uses them.
        self._instance_of: dict[str, str] = {}
        self._hosts: dict[str, HostInfo] = {}
        self._task_definitions: dict[str, dict[str, Any]] = {}

    async def refresh(self) -> tuple[Endpoint, ...]:
        clusters = await self._cluster_names()
        self._tracked = {c: t for c, t in self._tracked.items() if c in clusters}
        per_cluster = await gather_all(self._cluster_tasks(c) for c in clusters)
        tasks = [task for found, _ in per_cluster for task in found]
        draining: set[str] = set().union(*(d for _, d in per_cluster))
        await self._learn(tasks)
        endpoints, skipped = self._parse(tasks, draining)
        self._forget_unused(tasks)
        for reason, count in skipped.items():
            self._metrics.source_skipped_records.labels(self.name, reason).inc(count)
        return endpoints

    async def _cluster_names(self) -> list[str]:
        if self._clusters == ("*",):
            return await fetch_cluster_arns(self._aws)
        return list(self._clusters)

    async def _cluster_tasks(self, cluster: str) -> tuple[list[dict[str, Any]], set[str]]:
        """The running tasks of one cluster and its draining container-instance ARNs."""
        tracked = self._tracked.get(cluster) or ClusterTasks(
            cluster=cluster,
            health_refresh_s=self._health_refresh_s,
            max_drop_fraction=self._max_drop_fraction,
            clock=self._clock,
        )
        reconciled = await tracked.refresh(self._aws)
        self._tracked[cluster] = tracked
        if reconciled.dropped_too_many:
            self._metrics.source_list_shrinks.labels(self.name).inc()
        draining = await fetch_draining_instances(self._aws, cluster)
        return reconciled.tasks, draining

    async def _learn(self, tasks: Iterable[dict[str, Any]]) -> None:
        """Describe the container instances, EC2 hosts and task definitions not seen before."""
        new_instances: dict[str, list[str]] = {}
        new_definitions: set[str] = set()
        for task in tasks:
            ci = task.get("containerInstanceArn")
            if ci and ci not in self._instance_of:
                new_instances.setdefault(task["clusterArn"], []).append(ci)
            if task["taskDefinitionArn"] not in self._task_definitions:
                new_definitions.add(task["taskDefinitionArn"])
        described = await gather_all(
            fetch_container_instances(self._aws, cluster, sorted(set(arns))) for cluster, arns in new_instances.items()
        )
        for ci in (ci for found in described for ci in found):
            self._instance_of[ci["containerInstanceArn"]] = ci["ec2InstanceId"]
        await self._learn_hosts()
        definitions = await gather_all(fetch_task_definition(self._aws, arn) for arn in sorted(new_definitions))
        for definition in definitions:
            self._task_definitions[definition["taskDefinitionArn"]] = definition

    async def _learn_hosts(self) -> None:
        unknown = sorted(set(self._instance_of.values()) - self._hosts.keys())
        if not unknown:
            return
        for instance in await fetch_ec2_instances(self._aws, unknown):
            self._hosts[instance["InstanceId"]] = HostInfo(
                instance_id=instance["InstanceId"],
                private_ip=instance.get("PrivateIpAddress", ""),
                az=instance.get("Placement", {}).get("AvailabilityZone", ""),
            )

    def _parse(self, tasks: Iterable[dict[str, Any]], draining: set[str]) -> tuple[tuple[Endpoint, ...], Counter[str]]:
        endpoints: list[Endpoint] = []
        skipped: Counter[str] = Counter()
        for task in tasks:
            ci = task.get("containerInstanceArn", "")
            host = self._hosts.get(self._instance_of.get(ci, ""))
            parsed = parse_task(task, self._task_definitions[task["taskDefinitionArn"]], host, ci in draining)
            if isinstance(parsed, Endpoint):
                endpoints.append(parsed)
            elif parsed is not None:
                skipped[parsed] += 1
                log.debug("task_skipped", source=self.name, task=task.get("taskArn"), reason=parsed)
        return tuple(endpoints), skipped

    def _forget_unused(self, tasks: Sequence[dict[str, Any]]) -> None:
        """Drop cache entries no running task refers to, so churn cannot grow memory forever."""
        used_instances = {t.get("containerInstanceArn") for t in tasks}
        used_definitions = {t["taskDefinitionArn"] for t in tasks}
        self._instance_of = {k: v for k, v in self._instance_of.items() if k in used_instances}
        used_hosts = set(self._instance_of.values())
        self._hosts = {k: v for k, v in self._hosts.items() if k in used_hosts}
        self._task_definitions = {k: v for k, v in self._task_definitions.items() if k in used_definitions}

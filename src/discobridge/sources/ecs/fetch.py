"""The ECS and EC2 calls the ECS source makes: one helper per AWS operation, raw dicts out."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from discobridge.aws import AwsClients
from discobridge.sources.base import batches, gather_all


async def fetch_cluster_arns(aws: AwsClients) -> list[str]:
    return await aws.collect("ecs", "ListClusters", "clusterArns", "nextToken")


async def fetch_cluster_statuses(aws: AwsClients, clusters: Sequence[str]) -> dict[str, str]:
    """Each cluster's status (ACTIVE, INACTIVE, ...), "MISSING" for those ECS does not know."""
    # DescribeClusters takes at most 100 clusters per call.
    responses = await gather_all(
        aws.call("ecs", "DescribeClusters", clusters=list(batch)) for batch in batches(clusters)
    )
    statuses: dict[str, str] = {}
    for response in responses:
        for cluster in response.get("clusters", []):
            statuses[cluster.get("clusterArn", "")] = statuses[cluster.get("clusterName", "")] = cluster.get(
                "status", ""
            )
        for failure in response.get("failures", []):
            statuses[failure.get("arn", "")] = failure.get("reason", "MISSING")
    return {c: statuses.get(c, "MISSING") for c in clusters}


async def fetch_task_arns(aws: AwsClients, cluster: str) -> list[str]:
    return await aws.collect("ecs", "ListTasks", "taskArns", "nextToken", cluster=cluster, desiredStatus="RUNNING")


async def fetch_tasks(aws: AwsClients, cluster: str, arns: Sequence[str]) -> tuple[list[dict[str, Any]], set[str]]:
    """One DescribeTasks call (at most 100 ARNs): the tasks, and the ARNs ECS reports MISSING."""
    response = await aws.call("ecs", "DescribeTasks", cluster=cluster, tasks=list(arns))
    missing = {f.get("arn", "") for f in response.get("failures", []) if f.get("reason") == "MISSING"}
    return list(response.get("tasks", [])), missing


async def fetch_draining_instances(aws: AwsClients, cluster: str) -> set[str]:
    # Container-instance status changes over time, unlike its EC2 id, so it is listed each poll:
    # one call per cluster instead of re-describing every cached instance.
    arns = await aws.collect(
        "ecs", "ListContainerInstances", "containerInstanceArns", "nextToken", cluster=cluster, status="DRAINING"
    )
    return set(arns)


async def fetch_container_instances(aws: AwsClients, cluster: str, arns: Sequence[str]) -> list[dict[str, Any]]:
    """One DescribeContainerInstances call (at most 100 ARNs)."""
    response = await aws.call("ecs", "DescribeContainerInstances", cluster=cluster, containerInstances=list(arns))
    return list(response.get("containerInstances", []))


async def fetch_ec2_instances(aws: AwsClients, instance_ids: Sequence[str]) -> list[dict[str, Any]]:
    """One DescribeInstances call by id (at most 100): unfiltered calls sit in a lower throttle class."""
    response = await aws.call("ec2", "DescribeInstances", InstanceIds=list(instance_ids))
    return [
        instance for reservation in response.get("Reservations", []) for instance in reservation.get("Instances", [])
    ]


async def fetch_task_definition(aws: AwsClients, arn: str) -> dict[str, Any]:
    response = await aws.call("ecs", "DescribeTaskDefinition", taskDefinition=arn)
    definition: dict[str, Any] = response["taskDefinition"]
    return definition

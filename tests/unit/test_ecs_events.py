"""Reading ECS's EventBridge events: the shapes the AWS developer guide shows, and what is not one."""

from __future__ import annotations

from typing import Any

import pytest

from discobridge.sources.ecs.events import IGNORED, MALFORMED, InstanceChange, TaskChange, read_event

CLUSTER = "arn:aws:ecs:us-west-2:111122223333:cluster/FargateCluster"
TASK = "arn:aws:ecs:us-west-2:111122223333:task/FargateCluster/c13b4cb40f1f4fe4a2971f76ae5a47ad"


def envelope(kind: str, detail: Any) -> dict[str, Any]:
    """The envelope of the guide's "Amazon ECS task state change events" example."""
    return {
        "version": "0",
        "id": "3317b2af-7005-947d-b652-f55e762e571a",
        "detail-type": kind,
        "source": "aws.ecs",
        "account": "111122223333",
        "time": "2020-01-23T17:57:58Z",
        "region": "us-west-2",
        "resources": [TASK],
        "detail": detail,
    }


def task_detail(**changes: Any) -> dict[str, Any]:
    detail = {
        "attachments": [
            {
                "id": "1789bcae-ddfb-4d10-8ebe-8ac87ddba5b8",
                "type": "eni",
                "status": "ATTACHED",
                "details": [{"name": "privateIPv4Address", "value": "10.0.0.139"}],
            }
        ],
        "clusterArn": CLUSTER,
        "containers": [{"name": "FargateApp", "lastStatus": "RUNNING", "networkBindings": []}],
        "desiredStatus": "RUNNING",
        "lastStatus": "RUNNING",
        "group": "family:sample-fargate",
        "launchType": "FARGATE",
        "taskArn": TASK,
        "taskDefinitionArn": "arn:aws:ecs:us-west-2:111122223333:task-definition/sample-fargate:1",
        "createdAt": "2020-01-23T17:57:34.402Z",
        "version": 3,
    }
    return {**detail, **changes}


def test_a_running_task_event_reads_as_the_task_describe_tasks_would_give() -> None:
    change = read_event(envelope("ECS Task State Change", task_detail()))
    assert isinstance(change, TaskChange)
    assert (change.account_id, change.region, change.cluster) == ("111122223333", "us-west-2", "FargateCluster")
    assert change.task.running and change.task.version == 3 and change.task.eni_ip == "10.0.0.139"


def test_a_container_instance_event_says_whether_it_drains() -> None:
    detail = {"containerInstanceArn": "arn:aws:ecs:us-west-2:111122223333:container-instance/ab12"}
    change = read_event(
        envelope(
            "ECS Container Instance State Change",
            {**detail, "clusterArn": CLUSTER, "status": "DRAINING", "version": 14},
        )
    )
    assert change == InstanceChange(
        "111122223333", "us-west-2", "FargateCluster", detail["containerInstanceArn"], True, 14
    )


@pytest.mark.parametrize(
    ("event", "outcome"),
    [
        ("a string", IGNORED),
        ({"source": "aws.ec2", "detail-type": "EC2 Instance State-change Notification", "detail": {}}, IGNORED),
        (envelope("ECS Service Action", {"clusterArn": CLUSTER}), IGNORED),
        (envelope("ECS Task State Change", []), MALFORMED),
        (envelope("ECS Task State Change", task_detail(clusterArn=7)), MALFORMED),
        (envelope("ECS Task State Change", task_detail(version="3")), MALFORMED),  # cannot be ordered
        (envelope("ECS Task State Change", task_detail(taskArn=None)), MALFORMED),
        ({**envelope("ECS Task State Change", task_detail()), "region": None}, MALFORMED),
        (envelope("ECS Container Instance State Change", {"clusterArn": CLUSTER, "status": "ACTIVE"}), MALFORMED),
    ],
    ids=[
        "not-json-object",
        "other-service",
        "other-kind",
        "detail-list",
        "bad-cluster",
        "no-version",
        "no-task",
        "no-region",
        "instance-no-arn",
    ],
)
def test_what_is_not_a_readable_ecs_change_is_named(event: Any, outcome: str) -> None:
    assert read_event(event) == outcome

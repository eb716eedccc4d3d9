"""Bounds this project sets on what data from AWS and clients can make it hold, each shown to bite."""

from __future__ import annotations

from typing import Any, cast

from discobridge.aws import AwsClients
from discobridge.model import Health, make_endpoint
from discobridge.sources.base import Progress
from discobridge.sources.ecs.parse import task_facts
from discobridge.sources.ecs.tasks import STOPPED_KEPT_S, ClusterTasks
from tests.helpers import FakeClock

NO_AWS = cast(AwsClients, None)  # refresh_health with nothing due makes no call


def task(status: str, version: int, desired: str = "RUNNING") -> Any:
    return task_facts(
        {
            "taskArn": "arn:aws:ecs:us-east-1:1:task/prod/t1",
            "taskDefinitionArn": "arn:aws:ecs:us-east-1:1:task-definition/web:1",
            "lastStatus": status,
            "desiredStatus": desired,
            "version": version,
        }
    )


async def test_a_stopped_task_is_remembered_for_ecs_hour_and_then_forgotten() -> None:
    clock = FakeClock()
    tasks = ClusterTasks(cluster="prod", health_refresh_s=60.0, max_drop_fraction=0.5, clock=clock)
    assert tasks.apply(task("RUNNING", 2))
    assert tasks.apply(task("STOPPED", 3, desired="STOPPED"))
    assert not tasks.apply(task("RUNNING", 4))  # within the hour: an old answer, never a resurrection
    clock.now += STOPPED_KEPT_S + 1
    await tasks.refresh_health(NO_AWS, Progress())
    assert tasks.apply(task("RUNNING", 5))  # forgotten: the memory of stops does not grow forever


def test_a_port_name_fits_one_dns_label_after_its_underscore() -> None:
    def named(name: str) -> Any:
        endpoint = make_endpoint(
            service="api", host_ip="10.0.0.1", host_port=80, health=Health.HEALTHY, az="", source="ecs",
            ports=[(name, 9102)],
        )  # fmt: skip
        return endpoint.ports  # type: ignore[union-attr]

    assert named("m" * 62) == (("m" * 62, 9102),)
    assert named("m" * 63) == ()  # "_" + 63 characters is a 64-octet label: DNS cannot carry it
    assert named("main") == ()  # the main port's own name

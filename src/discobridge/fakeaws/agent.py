"""A simulated ECS agent: reports placed tasks RUNNING with host ports, through the real ECS API."""

from __future__ import annotations

import random
from typing import Any

from moto.ecs.models import ecs_backends

from discobridge.fakeaws import moto_ext

# Docker's default ephemeral range on Linux (net.ipv4.ip_local_port_range).
EPHEMERAL_PORTS = range(32768, 61000)


class SimulatedAgent:
    """Does what the agent on each container instance does once a task is placed on it."""

    def __init__(self, ecs: Any, rng: random.Random | None = None) -> None:
        self._ecs = ecs
        self._rng = rng or random.Random()
        self._next_port: dict[str, int] = {}
        self._definitions: dict[str, dict[str, Any]] = {}

    def start(self, cluster: str, tasks: list[dict[str, Any]]) -> None:
        """Report each task and its containers RUNNING, with the bindings Docker would make."""
        for task in tasks:
            definition = self._definition(task["taskDefinitionArn"])
            mode = definition.get("networkMode") or "bridge"
            host = task.get("containerInstanceArn", "")
            containers = [
                {
                    "containerName": container["name"],
                    "status": "RUNNING",
                    "networkBindings": self._bindings(container, mode, host),
                }
                for container in definition["containerDefinitions"]
            ]
            self._ecs.submit_task_state_change(
                cluster=cluster, task=task["taskArn"], status="RUNNING", containers=containers
            )

    def _definition(self, arn: str) -> dict[str, Any]:
        if arn not in self._definitions:
            self._definitions[arn] = self._ecs.describe_task_definition(taskDefinition=arn)["taskDefinition"]
        return self._definitions[arn]

    def _bindings(self, container: dict[str, Any], mode: str, host: str) -> list[dict[str, Any]]:
        if mode == "awsvpc":
            return []  # the task owns an ENI; nothing is bound on a host
        bindings = []
        for mapping in container.get("portMappings", []):
            host_port = mapping["containerPort"] if mode == "host" else mapping.get("hostPort") or 0
            if host_port == 0:
                # Each host hands out ports upward from its own starting point, as Docker does.
                host_port = self._next_port.get(host) or self._rng.randrange(
                    EPHEMERAL_PORTS.start, EPHEMERAL_PORTS.stop - 1000
                )
                self._next_port[host] = host_port + 1
            bindings.append(
                {
                    "bindIP": "0.0.0.0",
                    "containerPort": mapping["containerPort"],
                    "hostPort": host_port,
                    "protocol": mapping.get("protocol", "tcp"),
                }
            )
        return bindings


def set_task_health(region: str, cluster: str, task_arn: str, status: str, account: str = "123456789012") -> None:
    """Set a task's healthStatus: the real agent reports it over a private channel, not the API."""
    task_id = task_arn.rsplit("/", 1)[-1]
    for arn, task in ecs_backends[account][region].tasks[cluster].items():
        if arn.rsplit("/", 1)[-1] == task_id:
            task.health_status = status  # type: ignore[attr-defined]  # moto serialises any attribute
            moto_ext.changed(task)
            return
    raise KeyError(task_arn)

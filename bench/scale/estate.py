"""The estates of the scale benchmark: N tasks, one service per 10 tasks, one task-definition
revision per service (the normal case), 20 tasks per host, seeded through the fake AWS's API."""

from __future__ import annotations

from discobridge.fakeaws.estate import Container, Estate

CLUSTER = "scale"
PER_SERVICE = 10
PER_HOST = 20


def seed(estate: Estate, tasks: int) -> tuple[list[str], list[str]]:
    """Seed `tasks` bridge-mode tasks; returns the hosts' container-instance ARNs and the task
    ARNs of the first service."""
    estate.cluster(CLUSTER)
    hosts: list[str] = []
    for start in range(0, tasks // PER_HOST, 100):  # RunInstances of at most 100 at a time
        count = min(100, tasks // PER_HOST - start)
        hosts += estate.hosts(CLUSTER, count, az="abcdef"[start // 100 % 6])  # a /24 subnet per zone
    first: list[str] = []
    for s in range(tasks // PER_SERVICE):
        name = f"svc-{s:04d}"
        definition = estate.task_definition(name, Container("web", ports=(8080,)))
        placed = [hosts[(s * PER_SERVICE + i) % len(hosts)] for i in range(PER_SERVICE)]
        first = first or estate.service(CLUSTER, name, definition, placed)
        if s:
            estate.service(CLUSTER, name, definition, placed)
    return hosts, first

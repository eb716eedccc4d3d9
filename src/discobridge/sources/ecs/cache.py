"""What ECS and EC2 never change, learned once and shared by every cluster: task-definition
revisions (immutable, keyed by ARN) and the EC2 host behind each container instance (its EC2 id
and primary private IP are fixed for its life).

Each fact is kept the moment its call returns, so a refresh that fails or runs out of budget
half-way leaves what it learned for the next one: a large estate's first poll converges instead
of starting over. The cache is saved with the snapshot file, so a restart describes no known
revision. Entries no task has used for an hour are dropped, so churn cannot grow it forever.
"""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import structlog

from discobridge.aws import AwsCallError, AwsClients
from discobridge.model import canonical_ip
from discobridge.sources.base import Progress, batches, gather_kept
from discobridge.sources.ecs.fetch import fetch_container_instances, fetch_ec2_instances, fetch_task_definition
from discobridge.sources.ecs.parse import ContainerFacts, DefinitionFacts, HostInfo, TaskFacts, definition_facts

log = structlog.get_logger(__name__)

RETENTION_S = 3600.0
# A revision ECS refuses to describe (not a throttle or an outage: an error about that record) is
# tried again this much later; its tasks are skipped and counted meanwhile.
UNREADABLE_RETRY_S = 600.0
_ONE_RECORD_ERRORS = frozenset({"ClientException", "InvalidParameterException"})
_SWEEP_EVERY_S = 60.0
# How often a partition whose tasks did not change still looks its entries up, so they count as
# used: well within RETENTION_S.
TOUCH_EVERY_S = 300.0


class EcsCache:
    """Task definitions by ARN and hosts by container-instance ARN, as described so far."""

    def __init__(self, *, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._definitions: dict[str, DefinitionFacts] = {}
        self._hosts: dict[str, HostInfo] = {}
        self._ec2_of: dict[str, str] = {}  # container instance -> EC2 id, until its host is described
        self._used: dict[str, float] = {}  # any key above -> when a task last needed it
        self._describing: dict[str, asyncio.Task[None]] = {}  # revisions being described now
        self._unreadable: dict[str, float] = {}  # revisions ECS refused, and when
        self.revision = 0  # grows whenever a definition or host is learned or dropped
        self._swept_at = clock()

    def __len__(self) -> int:
        return len(self._definitions) + len(self._hosts)

    def definition(self, arn: str) -> DefinitionFacts | None:
        found = self._definitions.get(arn)
        if found is not None:
            self._used[arn] = self._clock()
        return found

    def host(self, container_instance: str) -> HostInfo | None:
        found = self._hosts.get(container_instance)
        if found is not None:
            self._used[container_instance] = self._clock()
        return found

    async def learn(self, aws: AwsClients, cluster: str, tasks: Iterable[TaskFacts], progress: Progress) -> None:
        """Describe the task definitions and hosts these tasks need that are not known yet."""
        tasks = list(tasks)
        definitions = sorted({t.definition_arn for t in tasks} - self._definitions.keys())
        instances = sorted({t.container_instance for t in tasks if t.container_instance} - self._hosts.keys())
        await gather_kept(
            [
                self._learn_hosts(aws, cluster, instances, progress),
                *(self._learn_definition(aws, arn, progress) for arn in definitions),
            ]
        )
        self._sweep()

    async def _learn_definition(self, aws: AwsClients, arn: str, progress: Progress) -> None:
        """Describe one revision, once however many clusters need it at the same time."""
        if self._unreadable.get(arn, -UNREADABLE_RETRY_S) > self._clock() - UNREADABLE_RETRY_S:
            return  # ECS refused it lately: its tasks are skipped, not the cluster failed
        shared = self._describing.get(arn)
        if shared is None:
            # Shielded, so a waiter that goes away (its refresh cancelled) does not cancel it for
            # the others; it is dropped unsent with the refresh that started it if that fails.
            shared = asyncio.get_running_loop().create_task(self._describe_definition(aws, arn))
            self._describing[arn] = shared
            shared.add_done_callback(functools.partial(self._described, arn))
        await asyncio.shield(shared)
        progress.add()

    async def _describe_definition(self, aws: AwsClients, arn: str) -> None:
        try:
            facts = definition_facts(await fetch_task_definition(aws, arn))
        except AwsCallError as exc:
            if exc.code not in _ONE_RECORD_ERRORS:
                raise
            log.warning("task_definition_unreadable", arn=arn, error=str(exc))
            self._unreadable[arn] = self._clock()
            return
        self._definitions[arn] = facts
        self._used[arn] = self._clock()
        self.revision += 1

    def _described(self, arn: str, task: asyncio.Task[None]) -> None:
        self._describing.pop(arn, None)
        if not task.cancelled():
            task.exception()  # retrieved: every waiter got it already

    async def close(self) -> None:
        """Cancel describes still in flight (at shutdown)."""
        for task in list(self._describing.values()):
            task.cancel()
        await asyncio.gather(*self._describing.values(), return_exceptions=True)

    async def _learn_hosts(self, aws: AwsClients, cluster: str, instances: Sequence[str], progress: Progress) -> None:
        unknown = [ci for ci in instances if ci not in self._ec2_of]
        await gather_kept(self._learn_ec2_ids(aws, cluster, batch, progress) for batch in batches(unknown))
        # ECS Anywhere hosts (mi-...) are not EC2 instances: EC2 would reject the whole call.
        by_ec2 = {self._ec2_of[ci]: ci for ci in instances if self._ec2_of.get(ci, "").startswith("i-")}
        await gather_kept(self._learn_ec2_hosts(aws, by_ec2, batch, progress) for batch in batches(sorted(by_ec2)))

    async def _learn_ec2_ids(self, aws: AwsClients, cluster: str, arns: Sequence[str], progress: Progress) -> None:
        for described in await fetch_container_instances(aws, cluster, arns):
            arn, ec2_id = described.get("containerInstanceArn"), described.get("ec2InstanceId")
            if isinstance(arn, str) and isinstance(ec2_id, str):
                self._ec2_of[arn] = ec2_id
                self._used[arn] = self._clock()
                progress.add()

    async def _learn_ec2_hosts(
        self, aws: AwsClients, by_ec2: Mapping[str, str], ids: Sequence[str], progress: Progress
    ) -> None:
        for instance in await fetch_ec2_instances(aws, ids):
            container_instance = by_ec2.get(instance.get("InstanceId", ""))
            if container_instance is None:
                continue
            self._hosts[container_instance] = HostInfo(
                instance_id=instance["InstanceId"],
                private_ip=str(instance.get("PrivateIpAddress") or ""),
                az=str((instance.get("Placement") or {}).get("AvailabilityZone") or ""),
            )
            self._ec2_of.pop(container_instance, None)
            self._used[container_instance] = self._clock()
            self.revision += 1
            progress.add()

    def _sweep(self) -> None:
        now = self._clock()
        if now - self._swept_at < _SWEEP_EVERY_S:
            return
        self._swept_at = now
        stale = {key for key, used in self._used.items() if now - used > RETENTION_S}
        self.revision += bool(stale)
        for key in stale:
            self._definitions.pop(key, None)
            self._hosts.pop(key, None)
            self._ec2_of.pop(key, None)
            del self._used[key]

    # ---- persistence -----------------------------------------------------------------------
    def export(self) -> dict[str, Any]:
        """The cache as JSON-able data, for the snapshot file."""
        return {
            "task_definitions": {
                arn: {
                    "family": d.family,
                    "network_mode": d.network_mode,
                    "health_checked": d.health_checked,
                    "containers": [
                        {
                            "name": c.name,
                            "tcp_ports": list(c.tcp_ports),
                            "labels": dict(c.labels),
                            "port_names": [[port, name] for port, name in c.port_names],
                        }
                        for c in d.containers
                    ],
                }
                for arn, d in sorted(self._definitions.items())
            },
            "hosts": {
                ci: {"instance_id": h.instance_id, "private_ip": h.private_ip, "az": h.az}
                for ci, h in sorted(self._hosts.items())
            },
        }

    def load(self, data: Any) -> int:
        """Take what export() wrote (by an earlier run); entries of the wrong shape are skipped."""
        if not isinstance(data, Mapping):
            return 0
        now, loaded = self._clock(), 0
        for arn, raw in _items(data.get("task_definitions")):
            facts = _definition(arn, raw)
            if facts is not None:
                self._definitions[arn] = facts
                self._used[arn] = now
                loaded += 1
        self.revision += 1
        for ci, raw in _items(data.get("hosts")):
            if not isinstance(raw, Mapping) or not all(
                isinstance(raw.get(k), str) for k in ("instance_id", "private_ip", "az")
            ):
                continue
            ip = canonical_ip(raw["private_ip"]) if raw["private_ip"] else ""
            if ip is not None:  # a bad address would poison every task on that host
                self._hosts[ci] = HostInfo(raw["instance_id"], ip, raw["az"])
                self._used[ci] = now
                loaded += 1
        return loaded


def _items(value: Any) -> list[tuple[str, Any]]:
    return [(k, v) for k, v in value.items() if isinstance(k, str)] if isinstance(value, Mapping) else []


def _definition(arn: str, raw: Any) -> DefinitionFacts | None:
    if not isinstance(raw, Mapping) or not isinstance(raw.get("containers"), list):
        return None
    containers = []
    for c in raw["containers"]:
        if not isinstance(c, Mapping) or not isinstance(c.get("name"), str):
            return None
        ports, labels = c.get("tcp_ports"), c.get("labels")
        if not isinstance(ports, list) or not all(isinstance(p, int) and 0 < p < 65536 for p in ports):
            return None
        if not isinstance(labels, Mapping) or not all(isinstance(v, str) for v in labels.values()):
            return None
        names = c.get("port_names")  # absent: cached before port names were kept, describe again
        if not isinstance(names, list) or not all(
            isinstance(n, list) and len(n) == 2 and isinstance(n[0], int) and isinstance(n[1], str) for n in names
        ):
            return None
        containers.append(
            ContainerFacts(c["name"], tuple(ports), tuple(sorted(labels.items())), tuple((p, n) for p, n in names))
        )
    family, mode, checked = raw.get("family"), raw.get("network_mode"), raw.get("health_checked", True)
    if not isinstance(family, str) or not isinstance(mode, str) or not isinstance(checked, bool):
        return None
    return DefinitionFacts(arn, family, mode, tuple(containers), checked)

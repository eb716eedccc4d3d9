"""Pure mapping of ECS JSON to endpoints: DescribeTasks and DescribeTaskDefinition answers are
first reduced to the few facts the rules need (all that is kept in memory), then mapped.

The public rules (README "How ECS maps to names and endpoints") live in `parse_task`.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from discobridge.model import MAIN_PORT, Endpoint, Health, make_endpoint, normalize_service_name

LABEL_NAME = "discobridge.name"
LABEL_PORT = "discobridge.port"
LABEL_ENABLE = "discobridge.enable"
LABEL_PORT_NAMED = "discobridge.port."  # discobridge.port.<name>=<containerPort>
_LABEL_PREFIX = "discobridge."
SOURCE = "ecs"
_STOPPING = frozenset({"DEACTIVATING", "STOPPING", "DEPROVISIONING", "STOPPED", "DELETED"})


@dataclass(frozen=True, slots=True)
class HostInfo:
    """The EC2 instance behind a container instance: where bridge and host-mode ports live."""

    instance_id: str
    private_ip: str
    az: str


@dataclass(frozen=True, slots=True)
class Binding:
    """A TCP port the agent bound on the host for one container (bridge and host modes)."""

    container: str
    container_port: int
    host_port: int


@dataclass(frozen=True, slots=True)
class TaskFacts:
    """What discobridge keeps of one described task."""

    arn: str
    cluster_arn: str
    group: str
    definition_arn: str
    last_status: str
    desired_status: str
    health: str
    az: str
    container_instance: str
    version: int
    eni_ip: str
    bindings: tuple[Binding, ...]

    @property
    def running(self) -> bool:
        """Only tasks that ECS runs and wants running serve traffic (Traefik #4249 routed PENDING)."""
        return self.last_status == "RUNNING" and self.desired_status == "RUNNING"

    @property
    def stopping(self) -> bool:
        """On its way out for good (a task never runs again once ECS wants it stopped), unlike a
        task still starting (PROVISIONING, PENDING, ACTIVATING)."""
        return self.desired_status == "STOPPED" or self.last_status in _STOPPING


@dataclass(frozen=True, slots=True)
class ContainerFacts:
    name: str
    tcp_ports: tuple[int, ...]  # container ports of its TCP port mappings, in definition order
    labels: tuple[tuple[str, str], ...]  # its discobridge.* docker labels only
    port_names: tuple[tuple[int, str], ...] = ()  # portMappings[].name of TCP mappings: (port, name)

    def label(self, name: str, default: str = "") -> str:
        return next((v for k, v in self.labels if k == name), default)


@dataclass(frozen=True, slots=True)
class DefinitionFacts:
    """What discobridge keeps of one task-definition revision (immutable in ECS)."""

    arn: str
    family: str
    network_mode: str
    containers: tuple[ContainerFacts, ...]
    # Whether any container has a health check: without one a task's health never changes, so
    # it is never described again for it.
    health_checked: bool = True


def last_segment(arn: str) -> str:
    """The name or id at the end of an ARN ("arn:...:cluster/prod" -> "prod")."""
    return arn.rsplit("/", 1)[-1]


def _text(value: Any) -> str:
    return value if isinstance(value, str) else ""


def _shared(value: Any) -> str:
    """A string that many tasks hold equal (a status, a zone, a cluster or task-definition ARN),
    kept once rather than once per task: the JSON decoder makes a new one for each."""
    return sys.intern(value) if isinstance(value, str) else ""


def _number(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def _dicts(value: Any) -> list[Mapping[str, Any]]:
    return [item for item in value if isinstance(item, Mapping)] if isinstance(value, list) else []


def task_facts(task: Mapping[str, Any]) -> TaskFacts | None:
    """The facts of a DescribeTasks (or task event) task; None if it names no task."""
    arn = _text(task.get("taskArn"))
    if not arn or not _text(task.get("taskDefinitionArn")):
        return None
    bindings = tuple(
        Binding(_shared(container.get("name")), _number(nb.get("containerPort")), _number(nb.get("hostPort")))
        for container in _dicts(task.get("containers"))
        for nb in _dicts(container.get("networkBindings"))
        if _number(nb.get("hostPort")) and _number(nb.get("containerPort")) and nb.get("protocol", "tcp") == "tcp"
    )
    return TaskFacts(
        arn=arn,
        cluster_arn=_shared(task.get("clusterArn")),
        group=_shared(task.get("group")),
        definition_arn=_shared(task.get("taskDefinitionArn")),
        last_status=_shared(task.get("lastStatus")),
        desired_status=_shared(task.get("desiredStatus")),
        health=_shared(task.get("healthStatus")),
        az=_shared(task.get("availabilityZone")),
        container_instance=_shared(task.get("containerInstanceArn")),
        version=_number(task.get("version")),
        eni_ip=_task_eni_ip(task),
        bindings=bindings,
    )


def definition_facts(definition: Mapping[str, Any]) -> DefinitionFacts:
    """The facts of a DescribeTaskDefinition answer's taskDefinition."""
    containers = tuple(
        ContainerFacts(
            name=_text(d.get("name")),
            tcp_ports=tuple(
                _number(pm.get("containerPort"))
                for pm in _dicts(d.get("portMappings"))
                if _number(pm.get("containerPort")) and pm.get("protocol", "tcp") == "tcp"
            ),
            labels=tuple(
                (k, v)
                for k, v in sorted((d.get("dockerLabels") or {}).items())
                if isinstance(k, str) and isinstance(v, str) and k.startswith(_LABEL_PREFIX)
            )
            if isinstance(d.get("dockerLabels"), Mapping)
            else (),
            port_names=tuple(
                (_number(pm.get("containerPort")), pm["name"])
                for pm in _dicts(d.get("portMappings"))
                if _number(pm.get("containerPort")) and pm.get("protocol", "tcp") == "tcp"
                if isinstance(pm.get("name"), str) and pm["name"]
            ),
        )
        for d in _dicts(definition.get("containerDefinitions"))
    )
    checked = any(isinstance(d.get("healthCheck"), Mapping) for d in _dicts(definition.get("containerDefinitions")))
    return DefinitionFacts(
        arn=_text(definition.get("taskDefinitionArn")),
        family=_text(definition.get("family")),
        network_mode=_text(definition.get("networkMode")) or "bridge",
        containers=containers,
        health_checked=checked,
    )


def _task_eni_ip(task: Mapping[str, Any]) -> str:
    # DescribeTasks calls the attachment "ElasticNetworkInterface"; task events call it "eni".
    for attachment in _dicts(task.get("attachments")):
        if attachment.get("type") in ("ElasticNetworkInterface", "eni"):
            for detail in _dicts(attachment.get("details")):
                if detail.get("name") == "privateIPv4Address" and _text(detail.get("value")):
                    return _text(detail.get("value"))
    for container in _dicts(task.get("containers")):
        for interface in _dicts(container.get("networkInterfaces")):
            if _text(interface.get("privateIpv4Address")):
                return _text(interface.get("privateIpv4Address"))
    return ""


@dataclass(frozen=True, slots=True)
class _Mapping:
    container: str
    container_port: int
    host_port: int


def parse_task(
    task: TaskFacts,
    definition: DefinitionFacts,
    host: HostInfo | None,
    draining: bool,
    *,
    account: str = "",
    region: str = "",
) -> Endpoint | str | None:
    """Map one task to its endpoint; a string is the reason it had to be skipped.

    None means the task is simply not published (not running, or opted out by label).
    """
    if not task.running:
        return None
    containers = [c for c in definition.containers if c.label(LABEL_ENABLE, "true").strip().lower() != "false"]
    if not containers:
        return None
    chosen = _choose_mapping(task, containers, definition.network_mode)
    if isinstance(chosen, str):
        return chosen
    mapping, container = chosen
    if definition.network_mode == "awsvpc":
        ip, instance_id = task.eni_ip, ""
        if not ip:
            return "no_task_ip"
    elif host is None or not host.private_ip:
        return "no_host_ip"
    else:
        ip, instance_id = host.private_ip, host.instance_id
    name = _service_name(task, definition, container)
    if not name:
        return "no_name"
    return make_endpoint(
        service=name,
        host_ip=ip,
        host_port=mapping.host_port,
        health=_health(task, draining),
        az=task.az or (host.az if host else ""),
        source=SOURCE,
        cluster=last_segment(task.cluster_arn),
        task_arn=task.arn,
        container=mapping.container,
        container_instance=task.container_instance,
        instance_id=instance_id,
        account=account,
        region=region,
        ports=_named_ports(task, container, definition.network_mode, mapping),
    )


def _named_ports(task: TaskFacts, container: ContainerFacts, mode: str, main: _Mapping) -> list[tuple[str, int]]:
    """The published container's other named TCP ports: (name, port a client connects to).
    Names come from portMappings[].name, or a `discobridge.port.<name>` label, which wins."""
    # ECS allows "_" in a port name; DNS labels do not: "admin_http" is served as "admin-http".
    wanted: dict[str, int] = {name.lower().replace("_", "-"): port for port, name in container.port_names}
    for key, value in container.labels:
        if key.startswith(LABEL_PORT_NAMED) and value.strip().isascii() and value.strip().isdigit():
            wanted[key[len(LABEL_PORT_NAMED) :].lower().replace("_", "-")] = int(value.strip())
    mappings = {m.container_port: m.host_port for m in _tcp_mappings(task, [container], mode).get(container.name, ())}
    return [
        (name, mappings[port])
        for name, port in wanted.items()
        if port != main.container_port and port in mappings and name != MAIN_PORT
    ]


def _choose_mapping(
    task: TaskFacts, containers: Sequence[ContainerFacts], mode: str
) -> tuple[_Mapping, ContainerFacts] | str:
    """`discobridge.port` picks a mapping; otherwise the first TCP mapping of the first container."""
    bindings = _tcp_mappings(task, containers, mode)
    for container in containers:
        label = container.label(LABEL_PORT).strip()
        if not label:
            continue
        if not (label.isascii() and label.isdigit()):
            return "bad_port_label"  # int() would take "8_0_8_0" and "٨٠٨٠" as 8080
        wanted = int(label)
        for mapping in bindings.get(container.name, ()):
            if mapping.container_port == wanted:
                return mapping, container
        return "port_label_not_bound"
    for container in containers:
        mappings = bindings.get(container.name)
        if mappings:
            return mappings[0], container
    return "no_port"


def _tcp_mappings(task: TaskFacts, containers: Sequence[ContainerFacts], mode: str) -> dict[str, list[_Mapping]]:
    """TCP port mappings per container name, with the port a client must connect to."""
    if mode == "awsvpc":
        # awsvpc tasks own their ENI: clients connect to the container port itself.
        return {c.name: [_Mapping(c.name, port, port) for port in c.tcp_ports] for c in containers}
    # bridge and host: the ports are known only once the agent reports networkBindings.
    found: dict[str, list[_Mapping]] = {}
    for binding in task.bindings:
        found.setdefault(binding.container, []).append(
            _Mapping(binding.container, binding.container_port, binding.host_port)
        )
    return found


def _service_name(task: TaskFacts, definition: DefinitionFacts, container: ContainerFacts) -> str:
    label = container.label(LABEL_NAME).strip()
    if label:
        return normalize_service_name(label)
    for prefix in ("service:", "family:"):
        if task.group.startswith(prefix) and len(task.group) > len(prefix):
            return normalize_service_name(task.group[len(prefix) :])
    return normalize_service_name(definition.family)


def _health(task: TaskFacts, draining: bool) -> Health:
    # Draining wins: the instance is being emptied whatever the task's own health says.
    if draining:
        return Health.DRAINING
    # UNKNOWN means "no container health check", which must count as healthy (aws.md 1.4).
    if task.health == "UNHEALTHY":
        return Health.UNHEALTHY
    return Health.HEALTHY

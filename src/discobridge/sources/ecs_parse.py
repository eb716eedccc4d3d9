"""Pure mapping of ECS DescribeTasks/DescribeTaskDefinition JSON to endpoints: the public rules."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from discobridge.model import Endpoint, Health, SourceName, normalize_service_name

LABEL_NAME = "discobridge.name"
LABEL_PORT = "discobridge.port"
LABEL_ENABLE = "discobridge.enable"


@dataclass(frozen=True, slots=True)
class HostInfo:
    """The EC2 instance behind a container instance: where bridge and host-mode ports live."""

    instance_id: str
    private_ip: str
    az: str


@dataclass(frozen=True, slots=True)
class _Mapping:
    container: str
    container_port: int
    host_port: int


def last_segment(arn: str) -> str:
    """The name or id at the end of an ARN ("arn:...:cluster/prod" -> "prod")."""
    return arn.rsplit("/", 1)[-1]


def is_running(task: Mapping[str, Any]) -> bool:
    """Only tasks that ECS runs and wants running serve traffic (Traefik #4249 routed PENDING)."""
    return task.get("lastStatus") == "RUNNING" and task.get("desiredStatus") == "RUNNING"


def parse_task(
    task: Mapping[str, Any],
    task_definition: Mapping[str, Any],
    host: HostInfo | None,
    draining: bool,
) -> Endpoint | str | None:
    """Map one described task to its endpoint; a string is the reason it had to be skipped.

    None means the task is simply not published (not running, or opted out by label).
    """
    if not is_running(task):
        return None
    definitions = [d for d in task_definition.get("containerDefinitions", []) if _enabled(d)]
    if not definitions:
        return None
    mode = task_definition.get("networkMode") or "bridge"
    chosen = _choose_mapping(task, definitions, mode)
    if isinstance(chosen, str):
        return chosen
    mapping, labels = chosen
    if mode == "awsvpc":
        ip, instance_id = _task_eni_ip(task), ""
        if not ip:
            return "no_task_ip"
    elif host is None or not host.private_ip:
        return "no_host_ip"
    else:
        ip, instance_id = host.private_ip, host.instance_id
    name = _service_name(task, task_definition, labels)
    if not name:
        return "no_name"
    return Endpoint(
        service=name,
        host_ip=ip,
        host_port=mapping.host_port,
        health=_health(task, draining),
        az=task.get("availabilityZone") or (host.az if host else ""),
        source=SourceName.ECS,
        cluster=last_segment(task.get("clusterArn", "")),
        task_arn=task.get("taskArn", ""),
        container=mapping.container,
        container_instance=task.get("containerInstanceArn", ""),
        instance_id=instance_id,
    )


def _enabled(definition: Mapping[str, Any]) -> bool:
    labels = definition.get("dockerLabels") or {}
    return str(labels.get(LABEL_ENABLE, "true")).strip().lower() != "false"


def _choose_mapping(
    task: Mapping[str, Any], definitions: Sequence[Mapping[str, Any]], mode: str
) -> tuple[_Mapping, Mapping[str, str]] | str:
    """`discobridge.port` picks a mapping; otherwise the first TCP mapping of the first container."""
    bindings = _tcp_mappings(task, definitions, mode)
    for definition in definitions:
        labels = definition.get("dockerLabels") or {}
        if LABEL_PORT not in labels:
            continue
        try:
            wanted = int(labels[LABEL_PORT])
        except ValueError:
            return "bad_port_label"
        for mapping in bindings.get(definition["name"], ()):
            if mapping.container_port == wanted:
                return mapping, labels
        return "port_label_not_bound"
    for definition in definitions:
        mappings = bindings.get(definition["name"])
        if mappings:
            return mappings[0], definition.get("dockerLabels") or {}
    return "no_port"


def _tcp_mappings(
    task: Mapping[str, Any], definitions: Sequence[Mapping[str, Any]], mode: str
) -> dict[str, list[_Mapping]]:
    """TCP port mappings per container name, with the port a client must connect to."""
    found: dict[str, list[_Mapping]] = {}
    if mode == "awsvpc":
        # awsvpc tasks own their ENI: clients connect to the container port itself.
        for definition in definitions:
            found[definition["name"]] = [
                _Mapping(definition["name"], pm["containerPort"], pm["containerPort"])
                for pm in definition.get("portMappings", [])
                if pm.get("containerPort") and pm.get("protocol", "tcp") == "tcp"
            ]
        return found
    # bridge and host: the ports are known only once the agent reports networkBindings.
    for container in task.get("containers", []):
        found[container.get("name", "")] = [
            _Mapping(container.get("name", ""), nb["containerPort"], nb["hostPort"])
            for nb in container.get("networkBindings", [])
            if nb.get("hostPort") and nb.get("containerPort") and nb.get("protocol", "tcp") == "tcp"
        ]
    return found


def _task_eni_ip(task: Mapping[str, Any]) -> str:
    for attachment in task.get("attachments", []):
        if attachment.get("type") == "ElasticNetworkInterface":
            for detail in attachment.get("details", []):
                if detail.get("name") == "privateIPv4Address" and detail.get("value"):
                    return str(detail["value"])
    for container in task.get("containers", []):
        for interface in container.get("networkInterfaces", []):
            if interface.get("privateIpv4Address"):
                return str(interface["privateIpv4Address"])
    return ""


def _service_name(task: Mapping[str, Any], task_definition: Mapping[str, Any], labels: Mapping[str, str]) -> str:
    if labels.get(LABEL_NAME, "").strip():
        return normalize_service_name(labels[LABEL_NAME].strip())
    group = str(task.get("group") or "")
    for prefix in ("service:", "family:"):
        if group.startswith(prefix) and len(group) > len(prefix):
            return normalize_service_name(group[len(prefix) :])
    return normalize_service_name(str(task_definition.get("family", "")))


def _health(task: Mapping[str, Any], draining: bool) -> Health:
    # Draining wins: the instance is being emptied whatever the task's own health says.
    if draining:
        return Health.DRAINING
    # UNKNOWN means "no container health check", which must count as healthy (aws.md 1.4).
    if task.get("healthStatus") == "UNHEALTHY":
        return Health.UNHEALTHY
    return Health.HEALTHY

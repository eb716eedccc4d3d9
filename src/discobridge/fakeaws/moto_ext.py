"""Teaches moto's ECS what the real ECS agent and API do, so the daemon reads realistic tasks.

moto 5.2.5 never reports networkBindings, models only the first container, moves tasks toward
STOPPED on every DescribeTasks, does not paginate lists and has no batch limits, keeps no
`version` and emits no events. This module adds the agent's SubmitTaskStateChange /
SubmitContainerStateChange calls, a version per task and container instance that grows with
each change (as ECS's does), an event on the fake EventBridge for each change, and fixes those
gaps. It replaces moto internals, so it is pinned to one moto version and refuses any other.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import moto
from moto.core.responses import ActionResult
from moto.ec2.models import ec2_backends
from moto.ecs.exceptions import ClusterNotFoundException, InvalidParameterException
from moto.ecs.models import EC2ContainerServiceBackend, Task
from moto.ecs.responses import EC2ContainerServiceResponse
from moto.moto_api._internal import mock_random
from moto.servicediscovery.responses import ServiceDiscoveryResponse

from discobridge.fakeaws.ecs_events import BUS

MOTO_VERSION = "5.2.5"
# Real ECS limits: https://docs.aws.amazon.com/AmazonECS/latest/APIReference/API_DescribeTasks.html
_MAX_DESCRIBE = 100
_MAX_PAGE = 100


@functools.cache
def install() -> None:
    """Patch moto's ECS once per process; raise if moto is not the pinned version."""
    if moto.__version__ != MOTO_VERSION:
        raise RuntimeError(f"discobridge.fakeaws extends moto {MOTO_VERSION} internals, found moto {moto.__version__}")
    Task.__init__ = _with_all_containers(Task.__init__)  # type: ignore[method-assign]
    # Real tasks change state when the agent reports it, not each time someone describes them.
    Task.advance = lambda self: None  # type: ignore[method-assign]
    EC2ContainerServiceBackend.submit_task_state_change = _backend_submit_task_state_change  # type: ignore[attr-defined]
    EC2ContainerServiceBackend.list_tasks = _list_tasks_of_one_cluster(EC2ContainerServiceBackend.list_tasks)  # type: ignore[method-assign]
    EC2ContainerServiceBackend.list_clusters = _active_clusters  # type: ignore[method-assign]
    EC2ContainerServiceBackend.stop_task = _announcing_stop(EC2ContainerServiceBackend.stop_task)  # type: ignore[method-assign]
    EC2ContainerServiceBackend.update_container_instances_state = _announcing_instance_state(  # type: ignore[method-assign]
        EC2ContainerServiceBackend.update_container_instances_state
    )
    responses: Any = EC2ContainerServiceResponse
    responses.submit_task_state_change = _respond_submit_task_state_change
    responses.submit_container_state_change = _respond_submit_container_state_change
    responses.list_tasks = _paginated(responses.list_tasks, "taskArns", default_status="RUNNING")
    responses.list_clusters = _paginated(responses.list_clusters, "clusterArns")
    responses.list_container_instances = _paginated(responses.list_container_instances, "containerInstanceArns")
    responses.describe_tasks = _limited(_with_missing_failures(responses.describe_tasks), "tasks")
    responses.describe_container_instances = _limited(responses.describe_container_instances, "containerInstances")
    cloudmap: Any = ServiceDiscoveryResponse
    cloudmap.list_services = _list_services
    cloudmap.list_namespaces = _list_namespaces


def _list_tasks_of_one_cluster(original: Callable[..., list[Any]]) -> Callable[..., list[Any]]:
    """ListTasks of exactly one cluster (moto matches "prod" inside "batch-prod"); a deleted
    (INACTIVE) cluster is not found, as ECS answers."""

    @functools.wraps(original)
    def list_tasks(self: Any, cluster_str: str | None = None, *args: Any, **kw: Any) -> list[Any]:
        tasks = original(self, cluster_str, *args, **kw)
        if not cluster_str:
            return tasks
        cluster = self._get_cluster(cluster_str)
        if cluster.status == "INACTIVE":
            raise ClusterNotFoundException
        return [t for t in tasks if t.cluster_arn.rsplit("/", 1)[-1] == cluster.name]

    return list_tasks


def _active_clusters(self: Any) -> list[str]:
    """ListClusters lists clusters that exist: a deleted one is INACTIVE and no longer listed."""
    return [cluster.arn for cluster in self.clusters.values() if cluster.status != "INACTIVE"]


def _now() -> datetime:
    return datetime.now(UTC)


def _with_all_containers(original: Callable[..., None]) -> Callable[..., None]:
    """Every containerDefinition becomes a PENDING container, as ECS does before the agent reports."""

    @functools.wraps(original)
    def init(self: Any, cluster: Any, task_definition: Any, container_instance_arn: Any, *args: Any, **kw: Any) -> None:
        original(self, cluster, task_definition, container_instance_arn, *args, **kw)
        self.status = "PENDING"
        self.health_status = "UNKNOWN"
        self.availability_zone = _placement_az(self, container_instance_arn)
        self.created_at = _now()
        eni_ip = next(
            (d["value"] for a in self.attachments for d in a["details"] if d["name"] == "privateIPv4Address"),
            None,
        )
        self.containers = [_container(self, definition, eni_ip) for definition in task_definition.container_definitions]
        self.version = 1
        BUS.task_changed(self)

    return init


def changed(task: Any) -> None:
    """A task's state changed: its version grows and ECS announces it."""
    task.version += 1
    BUS.task_changed(task)


def _announcing_stop(original: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(original)
    def stop_task(self: Any, *args: Any, **kw: Any) -> Any:
        task = original(self, *args, **kw)
        changed(task)
        return task

    return stop_task


def _announcing_instance_state(original: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(original)
    def update(self: Any, cluster_str: str, *args: Any, **kw: Any) -> Any:
        instances, failures = original(self, cluster_str, *args, **kw)
        cluster = self._get_cluster(cluster_str)
        for instance in instances:
            instance.version = getattr(instance, "version", 1) + 1
            BUS.instance_changed(instance, cluster.arn, self.account_id, self.region_name)
        return instances, failures

    return update


def _container(task: Any, definition: dict[str, Any], eni_ip: str | None) -> dict[str, Any]:
    # A plain dict serialises like moto's Container object, and can hold every ECS field.
    return {
        "containerArn": (
            f"arn:aws:ecs:{task.region_name}:{task._account_id}:container/"
            f"{task.cluster_name}/{task.id}/{mock_random.uuid4()}"
        ),
        "taskArn": task.task_arn,
        "name": definition.get("name"),
        "image": definition.get("image"),
        "lastStatus": "PENDING",
        "networkBindings": [],
        "networkInterfaces": [{"attachmentId": task.attachments[0]["id"], "privateIpv4Address": eni_ip}]
        if eni_ip
        else [],
        # Containers without a health check report UNKNOWN, never HEALTHY.
        "healthStatus": "UNKNOWN",
        "cpu": str(definition.get("cpu", 0)),
        "essential": definition.get("essential", True),
    }


def _placement_az(task: Any, container_instance_arn: str | None) -> str:
    if container_instance_arn:
        instances = task._backend.container_instances.get(task.cluster_name, {})
        instance = instances.get(container_instance_arn.rsplit("/", 1)[-1])
        return str(instance.attributes.get("ecs.availability-zone", "")) if instance else ""
    for attachment in task.attachments:
        for detail in attachment["details"]:
            if detail["name"] == "subnetId":
                ec2 = ec2_backends[task._account_id][task.region_name]
                return str(ec2.get_subnet(detail["value"]).availability_zone)
    return ""


def _find_task(backend: Any, cluster: str, task_ref: str) -> Any:
    cluster_name = cluster.rsplit("/", 1)[-1]
    task_id = task_ref.rsplit("/", 1)[-1]
    for arn, task in backend.tasks.get(cluster_name, {}).items():
        if arn.rsplit("/", 1)[-1] == task_id:
            return task
    raise InvalidParameterException(f"The referenced task was not found: {task_ref}")


def _backend_submit_task_state_change(
    self: Any, cluster: str, task_ref: str, status: str | None, containers: list[dict[str, Any]]
) -> None:
    task = _find_task(self, cluster, task_ref)
    by_name = {c["name"]: c for c in task.containers}
    for change in containers:
        container = by_name.get(change.get("containerName"))
        if container is None:
            raise InvalidParameterException(f"Unknown container {change.get('containerName')}")
        container["lastStatus"] = change.get("status", container["lastStatus"])
        if "networkBindings" in change:
            container["networkBindings"] = change["networkBindings"]
        if change.get("exitCode") is not None:
            container["exitCode"] = change["exitCode"]
    if status:
        task.status = status
        if status == "RUNNING" and getattr(task, "started_at", None) is None:
            task.pull_started_at = task.pull_stopped_at = task.connectivity_at = _now()
            task.started_at = _now()
        if status == "STOPPED":
            task.stopped_at = _now()
    changed(task)


def _respond_submit_task_state_change(self: Any) -> ActionResult:
    self.ecs_backend.submit_task_state_change(
        self._get_param("cluster", "default"),
        self._get_param("task"),
        self._get_param("status"),
        self._get_param("containers", []),
    )
    return ActionResult({"acknowledgment": "ACK"})


def _respond_submit_container_state_change(self: Any) -> ActionResult:
    change = {"containerName": self._get_param("containerName"), "status": self._get_param("status")}
    for key in ("networkBindings", "exitCode"):
        if self._get_param(key) is not None:
            change[key] = self._get_param(key)
    self.ecs_backend.submit_task_state_change(
        self._get_param("cluster", "default"), self._get_param("task"), None, [change]
    )
    return ActionResult({"acknowledgment": "ACK"})


def _paginated(
    original: Callable[[Any], ActionResult], key: str, default_status: str | None = None
) -> Callable[[Any], ActionResult]:
    """List calls page like AWS: maxResults (default and maximum 100) and an opaque nextToken."""

    @functools.wraps(original)
    def respond(self: Any) -> ActionResult:
        if default_status and self._get_param("desiredStatus") is None:
            # ListTasks without desiredStatus lists RUNNING tasks only.
            self.params["desiredStatus"] = default_status
        result: dict[str, Any] = dict(original(self).result)  # type: ignore[call-overload]
        result[key], next_token = _page(result[key], self._get_param("maxResults"), self._get_param("nextToken"))
        if next_token:
            result["nextToken"] = next_token
        return ActionResult(result)

    return respond


def _limited(original: Callable[[Any], ActionResult], key: str) -> Callable[[Any], ActionResult]:
    @functools.wraps(original)
    def respond(self: Any) -> ActionResult:
        if len(self._get_param(key) or []) > _MAX_DESCRIBE:
            raise InvalidParameterException(f"{key} cannot have more than {_MAX_DESCRIBE} elements.")
        return original(self)

    return respond


def _with_missing_failures(original: Callable[[Any], ActionResult]) -> Callable[[Any], ActionResult]:
    """Unknown task ARNs come back in failures[] with reason MISSING, as ECS reports them."""

    @functools.wraps(original)
    def respond(self: Any) -> ActionResult:
        result: dict[str, Any] = dict(original(self).result)  # type: ignore[call-overload]
        found = {task.id for task in result["tasks"]}
        result["failures"] = [
            {"arn": ref, "reason": "MISSING"}
            for ref in self._get_param("tasks", [])
            if ref.rsplit("/", 1)[-1] not in found
        ]
        return ActionResult(result)

    return respond


def _page(items: list[Any], max_results: int | str | None, token: str | None) -> tuple[list[Any], str | None]:
    """One page as AWS pages lists: at most max_results (default and maximum 100), then a token."""
    limit = min(int(max_results or _MAX_PAGE), _MAX_PAGE)
    start = json.loads(token)["offset"] if token else 0
    more = start + limit < len(items)
    return items[start : start + limit], json.dumps({"offset": start + limit}) if more else None


def _list_services(self: Any) -> str:
    """ListServices honouring the NAMESPACE_ID filter (moto ignores it) and paging."""
    params = json.loads(self.body or "{}")
    wanted = {v for f in params.get("Filters", []) if f.get("Name") == "NAMESPACE_ID" for v in f.get("Values", [])}
    services = [s for s in self.servicediscovery_backend.list_services() if not wanted or s.namespace_id in wanted]
    page, next_token = _page(services, params.get("MaxResults"), params.get("NextToken"))
    result: dict[str, Any] = {"Services": [s.to_json() for s in page]}
    if next_token:
        result["NextToken"] = next_token
    return json.dumps(result)


def _list_namespaces(self: Any) -> tuple[int, dict[str, str], str]:
    params = json.loads(self.body or "{}")
    namespaces = list(self.servicediscovery_backend.list_namespaces())
    page, next_token = _page(namespaces, params.get("MaxResults"), params.get("NextToken"))
    result: dict[str, Any] = {"Namespaces": [ns.to_json() for ns in page]}
    if next_token:
        result["NextToken"] = next_token
    return 200, {}, json.dumps(result)

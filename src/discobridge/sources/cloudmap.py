"""Cloud Map source: the instances of every service in the configured namespaces.

ECS registers bridge and host-mode tasks in Cloud Map as SRV records only; other teams register
non-ECS instances there too. Each instance's attributes carry its IPv4 and port, so one data-plane
DiscoverInstances call per service (a far larger AWS rate budget than ECS's) gives every endpoint.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

import structlog

from discobridge.aws import AwsClients
from discobridge.metrics import Metrics
from discobridge.model import Endpoint, Health, SourceName, normalize_service_name
from discobridge.sources.base import gather_all

log = structlog.get_logger(__name__)

# ListNamespaces and ListServices return at most 100 per page; DiscoverInstances up to 1,000
# instances per call: https://docs.aws.amazon.com/cloud-map/latest/api/API_DiscoverInstances.html
PAGE = 100
MAX_INSTANCES = 1000


async def fetch_namespace_ids(aws: AwsClients, page_size: int = PAGE) -> dict[str, str]:
    """Every namespace visible to us, by name."""
    namespaces = await aws.collect(
        "servicediscovery", "ListNamespaces", "Namespaces", "NextToken", MaxResults=page_size
    )
    return {ns["Name"]: ns["Id"] for ns in namespaces}


async def fetch_service_names(aws: AwsClients, namespace_id: str, page_size: int = PAGE) -> list[str]:
    services = await aws.collect(
        "servicediscovery",
        "ListServices",
        "Services",
        "NextToken",
        Filters=[{"Name": "NAMESPACE_ID", "Values": [namespace_id], "Condition": "EQ"}],
        MaxResults=page_size,
    )
    return [service["Name"] for service in services]


async def fetch_instances(aws: AwsClients, namespace: str, service: str) -> list[dict[str, Any]]:
    response = await aws.call(
        "servicediscovery",
        "DiscoverInstances",
        NamespaceName=namespace,
        ServiceName=service,
        HealthStatus="ALL",  # unhealthy ones too: they are served, marked, when nothing is healthy
        MaxResults=MAX_INSTANCES,
    )
    instances: list[dict[str, Any]] = response.get("Instances", [])
    return instances


def parse_instance(service: str, instance: Mapping[str, Any]) -> Endpoint | str:
    """One Cloud Map instance as an endpoint; a string is the reason it had to be skipped."""
    attributes = instance.get("Attributes") or {}
    ip = attributes.get("AWS_INSTANCE_IPV4", "")
    if not ip:
        return "no_ipv4"
    port_text = attributes.get("AWS_INSTANCE_PORT", "")
    if not port_text:
        return "no_port"
    if not port_text.isdigit() or not 0 < int(port_text) < 65536:
        return "bad_port"
    # HEALTHY and UNKNOWN (no health check configured) both serve, as Route 53 treats them.
    health = Health.UNHEALTHY if instance.get("HealthStatus") == "UNHEALTHY" else Health.HEALTHY
    return Endpoint(
        service=normalize_service_name(service),
        host_ip=ip,
        host_port=int(port_text),
        health=health,
        az=attributes.get("AVAILABILITY_ZONE", ""),
        source=SourceName.CLOUDMAP,
        cluster=attributes.get("ECS_CLUSTER_NAME", ""),
        instance_id=attributes.get("EC2_INSTANCE_ID") or attributes.get("AWS_EC2_INSTANCE_ID", ""),
    )


class CloudMapSource:
    """Polls the configured Cloud Map namespaces; a missing namespace is reported, not fatal."""

    name = SourceName.CLOUDMAP

    def __init__(self, *, aws: AwsClients, namespaces: Sequence[str], metrics: Metrics, page_size: int = PAGE) -> None:
        self._aws = aws
        self._namespaces = tuple(namespaces)
        self._metrics = metrics
        self._page_size = page_size
        self.warnings: tuple[str, ...] = ()

    async def refresh(self) -> tuple[Endpoint, ...]:
        ids = await fetch_namespace_ids(self._aws, self._page_size)
        self._note_missing([n for n in self._namespaces if n not in ids])
        found = await gather_all(self._namespace(name, ids[name]) for name in self._namespaces if name in ids)
        endpoints: list[Endpoint] = []
        skipped: Counter[str] = Counter()
        for service, instance in (pair for pairs in found for pair in pairs):
            parsed = parse_instance(service, instance)
            if isinstance(parsed, Endpoint):
                endpoints.append(parsed)
            else:
                skipped[parsed] += 1
                log.debug("instance_skipped", source=self.name, instance=instance.get("InstanceId"), reason=parsed)
        for reason, count in skipped.items():
            self._metrics.source_skipped_records.labels(self.name, reason).inc(count)
        return tuple(endpoints)

    async def _namespace(self, namespace: str, namespace_id: str) -> list[tuple[str, dict[str, Any]]]:
        services = await fetch_service_names(self._aws, namespace_id, self._page_size)
        instances = await gather_all(fetch_instances(self._aws, namespace, s) for s in services)
        return [(service, i) for service, found in zip(services, instances, strict=True) for i in found]

    def _note_missing(self, missing: list[str]) -> None:
        warnings = tuple(f"Cloud Map namespace {name!r} does not exist" for name in missing)
        if warnings != self.warnings:  # once per change, not once per poll
            for warning in warnings:
                log.error("cloudmap_namespace_not_found", source=self.name, error=warning)
        self.warnings = warnings

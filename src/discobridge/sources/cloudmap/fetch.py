"""The Cloud Map calls: namespaces, their services (paged), and each service's instances."""

from __future__ import annotations

from typing import Any

from discobridge.aws import AwsClients

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

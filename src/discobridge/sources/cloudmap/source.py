"""The Cloud Map source of one account and region: each configured namespace is a partition.

ECS registers bridge and host-mode tasks in Cloud Map as SRV records only; other teams register
non-ECS instances there too. Each instance's attributes carry its IPv4 and port, so one data-plane
DiscoverInstances call per service (a far larger AWS rate budget than ECS's) gives every endpoint.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

import structlog

from discobridge.aws import AwsClients
from discobridge.metrics import Metrics
from discobridge.model import Endpoint, PartitionKey, scope_id
from discobridge.sources.base import Nudge, Progress, Refreshed, gather_all
from discobridge.sources.cloudmap.fetch import PAGE, fetch_instances, fetch_namespace_ids, fetch_service_names
from discobridge.sources.cloudmap.parse import SOURCE, parse_instance

log = structlog.get_logger(__name__)


class NamespacePartition:
    """One Cloud Map namespace; one that does not exist is empty and named in a warning."""

    def __init__(self, *, key: PartitionKey, aws: AwsClients, metrics: Metrics, page_size: int = PAGE) -> None:
        self.key = key
        self.progress = Progress()
        self.nudge = Nudge()
        self._aws = aws
        self._metrics = metrics
        self._page_size = page_size
        self._missing = False

    async def refresh(self) -> Refreshed:
        namespace = self.key.name
        ids = await fetch_namespace_ids(self._aws, self._page_size)
        if namespace not in ids:
            return self._gone()
        self._missing = False
        services = await fetch_service_names(self._aws, ids[namespace], self._page_size)
        found = await gather_all(fetch_instances(self._aws, namespace, s) for s in services)
        endpoints: list[Endpoint] = []
        skipped: Counter[str] = Counter()
        for service, instances in zip(services, found, strict=True):
            for instance in instances:
                parsed = parse_instance(service, instance, account=self.key.account, region=self.key.region)
                if isinstance(parsed, Endpoint):
                    endpoints.append(parsed)
                else:
                    skipped[parsed] += 1
                    log.debug(
                        "instance_skipped", partition=self.key.id, instance=instance.get("InstanceId"), reason=parsed
                    )
        for reason, count in skipped.items():
            self._metrics.source_skipped_records.labels(SOURCE, reason).inc(count)
        # DiscoverInstances returns instances in random order: sort them into a stable one.
        return Refreshed(tuple(sorted(endpoints, key=lambda e: (e.service, e.host_ip, e.host_port))))

    def _gone(self) -> Refreshed:
        warning = f"Cloud Map namespace {self.key.name!r} does not exist in {self.key.account}/{self.key.region}"
        if not self._missing:  # once per change, not once per poll
            log.error("cloudmap_namespace_not_found", partition=self.key.id, error=warning)
        self._missing = True
        return Refreshed((), (warning,))


class CloudMapSource:
    """The configured Cloud Map namespaces of one account and region."""

    dynamic = False

    def __init__(
        self,
        *,
        aws: AwsClients,
        account: str,
        region: str,
        namespaces: Sequence[str],
        metrics: Metrics,
        page_size: int = PAGE,
    ) -> None:
        self.scope = scope_id(SOURCE, account, region)
        self.label = f"the Cloud Map namespaces of {account}/{region}"
        self._partitions = [
            NamespacePartition(
                key=PartitionKey(SOURCE, account, region, "namespace", name),
                aws=aws,
                metrics=metrics,
                page_size=page_size,
            )
            for name in namespaces
        ]

    def known(self) -> Sequence[NamespacePartition]:
        return list(self._partitions)

    def adopt(self, key: PartitionKey) -> bool:
        return any(p.key == key for p in self._partitions)

    async def list_partitions(self) -> Sequence[NamespacePartition]:
        return self.known()

"""What reads each account in each region ([aws] for the local account, [[accounts]] for the
others): its own AWS clients, budget and credentials (another account's sign with its role), and
its ECS and Cloud Map sources, whose partitions fail alone."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from aiobotocore.session import AioSession

from discobridge.aws import AwsClients
from discobridge.aws_loop import AwsLoop
from discobridge.aws_roles import AssumedRole, UtcNow
from discobridge.config import AccountRegion, Config
from discobridge.metrics import Metrics
from discobridge.sources.cloudmap.source import CloudMapSource
from discobridge.sources.ecs.cache import EcsCache
from discobridge.sources.ecs.source import EcsSource


@dataclass(frozen=True, slots=True)
class AccountRegionReader:
    where: AccountRegion
    aws: AwsClients
    ecs: EcsSource
    cloudmap: CloudMapSource | None


def account_region_readers(
    config: Config,
    *,
    metrics: Metrics,
    loop: AwsLoop,
    cache: EcsCache,
    events: bool,
    clock: Callable[[], float],
    utc_now: UtcNow,
    shared_services: Sequence[str] = (),
    session: AioSession | None = None,
    aws_options: dict[str, Any] | None = None,
) -> list[AccountRegionReader]:
    """One reader per account x region, the local account's first: its clients also hold the
    `shared_services` (the snapshot object, the events queue) and STS for the others' roles."""
    readers: list[AccountRegionReader] = []
    roles: dict[str, AssumedRole] = {}  # one per account: its regions share its credentials
    for where in config.account_regions():
        services = ["ecs", "ec2", *(["servicediscovery"] if where.namespaces else [])]
        role = None
        if where.role_arn is None:
            # STS: the other accounts' roles, and this account's own id (to tell its events).
            services += [*shared_services, *(["sts"] if config.accounts or events else [])]
        else:
            role = roles.get(where.account)
            if role is None:
                role = roles[where.account] = AssumedRole(
                    sts=readers[0].aws,
                    role_arn=where.role_arn,
                    account=where.account,
                    external_id=where.external_id,
                    now=utc_now,
                )
        aws = AwsClients(
            config=config.aws,
            metrics=metrics,
            session=session,
            account=where.account,
            region=where.region,
            credentials=role.session if role else None,
            loop=loop,
            services=services,
            **(aws_options or {}),
        )
        ecs = EcsSource(
            aws=aws,
            account=where.account,
            region=where.region,
            clusters=where.clusters,
            cache=cache,
            metrics=metrics,
            health_refresh_s=config.ecs.health_refresh_s,
            max_drop_fraction=config.ecs.max_drop_fraction,
            clock=clock,
            events=events,
            reconcile_s=config.events.reconcile_s,
            # Events of every account and region reach one topic: each tells its own by account
            # id and region. Only the local account's own region's come without forwarding.
            account_id=where.account_id,
            forwarded=where.role_arn is not None,
        )
        cloudmap = (
            CloudMapSource(
                aws=aws, account=where.account, region=where.region, namespaces=where.namespaces, metrics=metrics
            )
            if where.namespaces
            else None
        )
        readers.append(AccountRegionReader(where, aws, ecs, cloudmap))
    return readers

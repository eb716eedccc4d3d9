"""Composition root: builds config-driven objects, runs the pollers, stops cleanly on a signal."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import time
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import Any

import structlog
from aiobotocore.session import AioSession

from discobridge import aws_roles
from discobridge.accounts import account_region_readers
from discobridge.aws_loop import AwsLoop
from discobridge.aws_roles import UtcNow
from discobridge.config import Config
from discobridge.descriptors import connection_caps, raise_open_files_limit
from discobridge.event_feed import EventFeed
from discobridge.frontends.dns import DnsFrontend
from discobridge.frontends.http import HttpFrontend, make_app
from discobridge.loop_lag import watch_loop_lag
from discobridge.memory import release_free_memory
from discobridge.metrics import Metrics
from discobridge.poller import SourcePoller
from discobridge.render import Renderer
from discobridge.render.dns import DnsRenderer
from discobridge.render.eureka import EurekaRenderer
from discobridge.render.eureka_wire import EurekaPaths
from discobridge.render.prometheus import PrometheusRenderer
from discobridge.render.resolver import ResolverRenderer
from discobridge.render.status import StatusSections
from discobridge.snapshot_file import LocalSnapshot, decode
from discobridge.snapshot_s3 import S3Snapshot
from discobridge.snapshot_saver import SnapshotSaver, SnapshotTarget
from discobridge.sources.base import Source
from discobridge.sources.ecs.cache import EcsCache
from discobridge.store import SnapshotStore

log = structlog.get_logger(__name__)


def renderers(config: Config) -> list[Renderer[Any]]:
    """Every document family the frontends serve, each rendered once per snapshot."""
    paths = EurekaPaths(
        home=config.eureka.home_page_path, status=config.eureka.status_page_path, health=config.eureka.health_check_path
    )
    return [
        DnsRenderer(
            zone=config.dns.zone,
            ttl_s=config.dns.ttl_s,
            ns_name=config.dns.ns_name or "",
            ns_addresses=config.dns.ns_addresses
            or tuple(listen.host for listen in config.dns.listen if listen.host not in ("0.0.0.0", "::")),
        ),
        ResolverRenderer(),
        StatusSections(),
        EurekaRenderer(paths=paths),
        PrometheusRenderer(),
    ]


class Daemon:
    """Everything one discobridge process runs, wired from a Config."""

    def __init__(
        self,
        config: Config,
        *,
        session: AioSession | None = None,
        aws_options: dict[str, Any] | None = None,
        clock: Callable[[], float] = time.monotonic,
        snapshot_interval_s: float = 10.0,
        events_wait_s: int = 20,
        utc_now: UtcNow = aws_roles.utc_now,
    ) -> None:
        self.config = config
        self.metrics = Metrics.create()
        snapshot_path = config.snapshot.path or ""
        topic_arn = config.events.topic_arn
        self.aws_loop = AwsLoop()
        self.ecs_cache = EcsCache(clock=clock)
        # What the local account's clients hold for everyone: the snapshot object, the events queue.
        shared = [*(["s3"] if snapshot_path.startswith("s3://") else []), *(["sqs", "sns"] if topic_arn else [])]
        readers = account_region_readers(
            config,
            metrics=self.metrics,
            loop=self.aws_loop,
            cache=self.ecs_cache,
            events=topic_arn is not None,
            clock=clock,
            utc_now=utc_now,
            shared_services=shared,
            session=session,
            aws_options=aws_options,
        )
        self.clients = [r.aws for r in readers]
        self.ecs_sources = [r.ecs for r in readers]
        self.sources: list[tuple[Source, float]] = [(r.ecs, config.ecs.poll_interval_s) for r in readers]
        self.sources += [(r.cloudmap, config.cloudmap.poll_interval_s) for r in readers if r.cloudmap]
        self.aws = self.clients[0]  # the local account's
        self.metrics.gauge_from(
            "discobridge_aws_budget_calls_per_second",
            "The client-side budget of each AWS throttle bucket now, by account and region: its "
            "[aws] api_rate_fraction share, or less while AWS throttles that account and region.",
            ["account", "region", "bucket"],
            lambda: {key: rate for clients in self.clients for key, rate in clients.budget_rates().items()},
        )
        self.store = SnapshotStore(
            renderers=renderers(config),
            scopes={s.scope: s.label for s, _ in self.sources},
            startup_wait_s=config.health.startup_wait_s,
            clock=clock,
            after_build=release_free_memory,
        )
        self.events = (
            EventFeed(
                aws=self.aws,
                topic_arn=topic_arn,
                queue_prefix=config.events.queue_prefix,
                sinks=self.ecs_sources,
                metrics=self.metrics,
                poll_interval_s=config.ecs.poll_interval_s,
                clock=clock,
                after_batch=self.store.wake_waiters,
                wait_s=events_wait_s,
            )
            if topic_arn
            else None
        )
        for source, _ in self.sources:
            if not source.dynamic:  # the configured partitions are what the first snapshot waits for
                self.store.listed(source.scope, [p.key for p in source.known()])
        caps = connection_caps(raise_open_files_limit())
        self.dns = DnsFrontend(
            store=self.store, metrics=self.metrics, listen=config.dns.listen, tcp_max_connections=caps.dns_tcp
        )
        self.http = HttpFrontend(
            app=make_app(store=self.store, metrics=self.metrics, config=config),
            listen=config.http.listen,
            max_connections=caps.http,
        )
        self.pollers = [
            SourcePoller(
                source=s,
                store=self.store,
                metrics=self.metrics,
                interval_s=interval,
                clock=clock,
                slow_after_s=config.health.max_staleness_s / 2,
            )
            for s, interval in self.sources
        ]
        self.snapshot_target: SnapshotTarget | None = None
        if snapshot_path.startswith("s3://"):
            self.snapshot_target = S3Snapshot(aws=self.aws, url=snapshot_path)
        elif snapshot_path:
            self.snapshot_target = LocalSnapshot(Path(snapshot_path))
        self.saver = (
            SnapshotSaver(
                store=self.store,
                target=self.snapshot_target,
                caches=self._caches,
                min_interval_s=snapshot_interval_s,
                clock=clock,
            )
            if self.snapshot_target
            else None
        )
        self._tasks: list[asyncio.Task[None]] = []

    async def __aenter__(self) -> Daemon:
        self.aws_loop.start()
        try:
            for clients in self.clients:
                await clients.__aenter__()
        except BaseException:
            await self._close_clients()
            raise
        return self

    async def _close_clients(self) -> None:
        try:
            for clients in reversed(self.clients):
                await clients.__aexit__(None, None, None)
        finally:
            self.aws_loop.stop()

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop_polling()
        await self.ecs_cache.close()
        await self.http.stop()
        await self.dns.stop()
        await self.store.close()
        await self._close_clients()

    async def serve(self) -> None:
        """Restore saved data, open every listener, then start polling: clients get SERVFAIL/503
        until every partition has a first result, unless saved data answers for them meanwhile."""
        await self.restore()
        await self.dns.start()
        await self.http.start()
        self.start_polling()
        if self.saver is not None:
            self._tasks.append(asyncio.create_task(self.saver.run(), name="snapshot-saver"))

    async def restore(self) -> None:
        """Load the snapshot file (or S3 object), if any: partitions and the sources' caches."""
        if self.snapshot_target is None:
            return
        try:
            data = await self.snapshot_target.read()
        except Exception as exc:  # noqa: BLE001 - no saved data is no reason not to start
            log.warning("snapshot_file_unreadable", path=self.snapshot_target.name, error=str(exc))
            return
        if data is None:
            return
        saved = decode(data, origin=self.snapshot_target.name, clock=self.store.now)
        definitions = self.ecs_cache.load(saved.caches.get("ecs"))
        restored = 0
        for key, result in saved.partitions.items():
            if any(source.adopt(key) for source, _ in self.sources):
                self.store.restore(key, result)
                restored += 1
        await self.store.flush()  # served from the first query on, when it is complete
        log.info(
            "snapshot_restored",
            path=self.snapshot_target.name,
            partitions=restored,
            cached_facts=definitions,
            stale_s=_rounded(self.store.age_s()),
        )

    def _caches(self) -> dict[str, Any]:
        return {"ecs": self.ecs_cache.export()}

    def start_polling(self) -> None:
        self._tasks = [asyncio.create_task(p.run(), name=f"source-{i}") for i, p in enumerate(self.pollers)]
        if self.events is not None:
            self._tasks.append(asyncio.create_task(self.events.run(), name="ecs-events"))
        self._tasks.append(asyncio.create_task(watch_loop_lag(self.metrics.event_loop_lag), name="loop-lag"))

    async def stop_polling(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []

    async def refresh_all(self) -> bool:
        """List and refresh every partition once; True when all succeeded."""
        results = await asyncio.gather(*(p.refresh_all() for p in self.pollers))
        return all(results)


async def run(config: Config) -> int:
    """Run the daemon until SIGINT or SIGTERM; drain, then stop cleanly and return the exit code.

    The first signal turns /healthz to 503 and keeps answering for [http] drain_s, so load
    balancers take this replica out before its listeners close; a second signal skips the wait.
    """
    signals = asyncio.Queue[int]()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, signals.put_nowait, signum)
    async with Daemon(config) as daemon:
        await daemon.serve()
        log.info(
            "daemon_started",
            clusters=list(config.ecs.clusters),
            region=config.aws.region,
            accounts=[f"{r.account}/{r.region}" for r in config.account_regions()],
        )
        received = await signals.get()
        daemon.http.begin_shutdown()
        log.info("daemon_draining", signal=signal.Signals(received).name, drain_s=config.http.drain_s)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(signals.get(), timeout=config.http.drain_s)
            log.info("daemon_drain_cut_short")
        log.info("daemon_stopping", generation=daemon.store.generation)
    return 0


def _rounded(value: float | None) -> float | None:
    return None if value is None else round(value, 1)

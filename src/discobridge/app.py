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

from discobridge import snapshot_file
from discobridge.aws import AwsClients
from discobridge.config import Config
from discobridge.frontends.dns import DnsFrontend
from discobridge.frontends.http import HttpFrontend, make_app
from discobridge.metrics import Metrics
from discobridge.poller import Poller
from discobridge.render.dns import DnsRenderer
from discobridge.render.eureka import EurekaPaths, EurekaRenderer
from discobridge.snapshot import Renderers, SnapshotStore
from discobridge.sources.base import Source, gather_all
from discobridge.sources.cloudmap import CloudMapSource
from discobridge.sources.ecs import EcsSource

log = structlog.get_logger(__name__)


class Daemon:
    """Everything one discobridge process runs, wired from a Config."""

    def __init__(
        self,
        config: Config,
        *,
        session: AioSession | None = None,
        aws_options: dict[str, Any] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.config = config
        self.metrics = Metrics.create()
        self.aws = AwsClients(config=config.aws, metrics=self.metrics, session=session, **(aws_options or {}))
        sources: list[tuple[Source, float]] = [
            (
                EcsSource(
                    aws=self.aws,
                    clusters=config.ecs.clusters,
                    metrics=self.metrics,
                    health_refresh_s=config.ecs.health_refresh_s,
                    max_drop_fraction=config.ecs.max_drop_fraction,
                    clock=clock,
                ),
                config.ecs.poll_interval_s,
            ),
        ]
        if config.cloudmap.namespaces:
            cloudmap = CloudMapSource(aws=self.aws, namespaces=config.cloudmap.namespaces, metrics=self.metrics)
            sources.append((cloudmap, config.cloudmap.poll_interval_s))
        paths = EurekaPaths(
            home=config.eureka.home_page_path,
            status=config.eureka.status_page_path,
            health=config.eureka.health_check_path,
        )
        renderers = Renderers(
            dns=DnsRenderer(zone=config.dns.zone, ttl_s=config.dns.ttl_s), eureka=EurekaRenderer(paths=paths)
        )
        self.store = SnapshotStore(sources=[s.name for s, _ in sources], renderers=renderers, clock=clock)
        self.dns = DnsFrontend(store=self.store, metrics=self.metrics, listen=config.dns.listen)
        self.http = HttpFrontend(
            app=make_app(store=self.store, metrics=self.metrics, config=config), listen=config.http.listen
        )
        self.pollers = [
            Poller(source=s, store=self.store, metrics=self.metrics, interval_s=interval, clock=clock)
            for s, interval in sources
        ]
        self._tasks: list[asyncio.Task[None]] = []
        self._clock = clock

    async def __aenter__(self) -> Daemon:
        await self.aws.__aenter__()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop_polling()
        await self.http.stop()
        await self.dns.stop()
        await self.aws.__aexit__(exc_type, exc, tb)

    async def serve(self) -> None:
        """Open every listener, then start polling: clients get SERVFAIL/503 until the first poll,
        unless a saved snapshot answers for them meanwhile."""
        self._restore()
        await self.dns.start()
        await self.http.start()
        self.start_polling()
        if self.config.snapshot.path:
            self._tasks.append(asyncio.create_task(self._keep_saving(Path(self.config.snapshot.path))))

    def _restore(self) -> None:
        if not self.config.snapshot.path:
            return
        path = Path(self.config.snapshot.path)
        for result in snapshot_file.load(path, clock=self._clock):
            if result.source in self.store.status:
                self.store.publish(result)
        if self.store.current is not None:
            log.info("snapshot_restored", path=str(path), generation=self.store.generation, stale_s=self.store.age_s())

    async def _keep_saving(self, path: Path) -> None:
        """Write the snapshot's source results after every change (in a thread: it is disk I/O)."""
        generation = self.store.generation
        while True:
            await self.store.wait_for(generation, timeout=None)
            generation = self.store.generation
            try:
                await asyncio.to_thread(snapshot_file.save, path, list(self.store.results.values()))
                log.info("snapshot_saved", path=str(path), generation=generation)
            except Exception as exc:  # noqa: BLE001 - a full disk must not stop the daemon, nor this loop
                log.warning("snapshot_file_not_written", path=str(path), error=str(exc))

    def start_polling(self) -> None:
        self._tasks = [asyncio.create_task(p.run(), name=f"poller-{i}") for i, p in enumerate(self.pollers)]

    async def stop_polling(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []

    async def refresh_all(self) -> bool:
        """Refresh every source once; True when all succeeded."""
        results = await gather_all(p.refresh_once() for p in self.pollers)
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
        log.info("daemon_started", clusters=list(config.ecs.clusters), region=config.aws.region)
        received = await signals.get()
        daemon.http.begin_shutdown()
        log.info("daemon_draining", signal=signal.Signals(received).name, drain_s=config.http.drain_s)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(signals.get(), timeout=config.http.drain_s)
            log.info("daemon_drain_cut_short")
        log.info("daemon_stopping", generation=daemon.store.generation)
    return 0

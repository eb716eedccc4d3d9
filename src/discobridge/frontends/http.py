"""The aiohttp server: app factory, JSON errors, request counting, and the listener's lifecycle."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Any

import structlog
from aiohttp import web

from discobridge.config import BindError, Config, HostPort
from discobridge.frontends import eureka, health, prometheus, resolver
from discobridge.frontends.http_connections import LimitedRunner, json_error
from discobridge.frontends.keys import CONFIG, METRICS, STATE, STORE, HttpState
from discobridge.metrics import Metrics
from discobridge.store import SnapshotStore

log = structlog.get_logger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

# No route reads a body: one this large is refused before anything reads it (Eureka's register
# call, the largest a client sends, is about 2 KiB).
MAX_BODY = 16 * 1024


@web.middleware
async def _json_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Every 4xx/5xx leaves as a JSON body; an unexpected failure is a 500 with no traceback."""
    if (request.content_length or 0) > MAX_BODY:
        response = json_error(413, f"a request body over {MAX_BODY} bytes is refused")
        response.force_close()  # the body is not read: the connection ends here
        return response
    try:
        return await handler(request)
    except web.HTTPException as exc:
        if exc.status < 400 or exc.content_type == "application/json":
            raise
        headers = {k: v for k, v in exc.headers.items() if k.lower() in ("allow", "retry-after")}
        return json_error(exc.status, exc.reason, headers)
    except (asyncio.CancelledError, ConnectionResetError):
        raise
    except Exception:
        log.exception("http_request_failed", path=request.path)
        return json_error(500, "internal error")


def _counting(counts: Counter[tuple[str, str]]) -> Any:
    @web.middleware
    async def count(request: web.Request, handler: Handler) -> web.StreamResponse:
        response = await handler(request)
        route = request.match_info.route.resource
        name = route.canonical if route is not None else "unmatched"
        counts[(name, str(response.status))] += 1
        return response

    return count


def make_app(
    *, store: SnapshotStore, metrics: Metrics, config: Config, wall_clock: Callable[[], float] = time.time
) -> web.Application:
    """The HTTP application: resolver, health, metrics and status page (Eureka mounts here too)."""
    counts: Counter[tuple[str, str]] = Counter()
    app = web.Application(middlewares=[_counting(counts), _json_errors])
    app[STORE] = store
    app[METRICS] = metrics
    app[CONFIG] = config
    app[STATE] = HttpState()
    metrics.count_from(
        "discobridge_http_requests", "HTTP requests answered, by route and status.", ["route", "status"], lambda: counts
    )
    resolver.add_routes(app)
    health.add_routes(app)
    eureka.add_routes(app, wall_clock)
    prometheus.add_routes(app)
    return app


class HttpFrontend:
    """Serves the HTTP app on one address."""

    def __init__(self, *, app: web.Application, listen: HostPort, **limits: Any) -> None:
        self.app = app
        self._listen = listen
        self._limits = limits  # max_connections, head_timeout_s, idle_s (http_connections)
        app[METRICS].gauge_from(
            "discobridge_http_connections", "HTTP connections open now.", [], lambda: {(): len(self._connections())}
        )
        app[METRICS].count_from(
            "discobridge_http_evicted",
            "HTTP connections closed to admit a new one at the connection cap (the longest without a request).",
            [],
            lambda: {(): getattr(self._runner.server if self._runner else None, "evicted", 0)},
        )
        self._runner: web.BaseRunner | None = None
        self.address: HostPort | None = None

    async def start(self) -> None:
        self._runner = LimitedRunner(
            self.app,
            shutdown_timeout=3.0,  # what is still open after the drain gets 3 s, then is closed
            **self._limits,
        )
        await self._runner.setup()
        site = web.TCPSite(self._runner, self._listen.host, self._listen.port)
        try:
            await site.start()
        except OSError as exc:
            await self.stop()
            raise BindError.of("[http] listen", self._listen, exc) from None
        self.address = HostPort(self._listen.host, int(self._runner.addresses[0][1]))
        log.info("http_listening", address=str(self.address))

    def _connections(self) -> list[Any]:
        server = self._runner.server if self._runner is not None else None
        return server.connections if server is not None else []

    def begin_shutdown(self) -> None:
        """From now on /healthz answers 503, so load balancers take this replica out first, and
        open long polls answer at once."""
        self.app[STATE].shutting_down = True
        self.app[STORE].wake_waiters()

    async def stop(self) -> None:
        if self._runner is not None:
            self.begin_shutdown()  # open long polls answer now rather than hold the close up
            await self._runner.cleanup()
            self._runner = None

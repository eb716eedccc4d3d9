"""The aiohttp server: app factory, JSON errors, request counting, and the listener's lifecycle."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Any

import structlog
from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError, LineTooLong
from aiohttp.web_protocol import RequestHandler

from discobridge.config import BindError, Config, HostPort
from discobridge.frontends import eureka, health, resolver
from discobridge.frontends.keys import CONFIG, METRICS, STATE, STORE, HttpState
from discobridge.metrics import Metrics
from discobridge.store import SnapshotStore

log = structlog.get_logger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

# Limits on what a client may send: a longer request line gets 400, a longer header field or
# more headers 431. The two sizes differ so the parser's LineTooLong tells which one was hit.
MAX_REQUEST_LINE = 8190
MAX_HEADER_FIELD = 8192
MAX_HEADERS = 100


def json_error(status: int, message: str, headers: dict[str, str] | None = None) -> web.Response:
    return web.json_response({"error": message, "status": status}, status=status, headers=headers)


@web.middleware
async def _json_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Every 4xx/5xx leaves as a JSON body; an unexpected failure is a 500 with no traceback."""
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


class _Protocol(RequestHandler):
    """aiohttp's connection handler, answering unparseable requests in JSON and quietly."""

    def handle_error(
        self, request: Any, status: int = 500, exc: BaseException | None = None, message: str | None = None
    ) -> web.StreamResponse:
        too_long = isinstance(exc, LineTooLong) and exc.args[1] == MAX_HEADER_FIELD
        if too_long or (isinstance(exc, HttpProcessingError) and "Too many headers" in str(exc.message)):
            status = 431
        reason = exc.message if isinstance(exc, HttpProcessingError) else (message or "bad request")
        log.debug("http_request_rejected", status=status, error=reason)
        response = json_error(status, str(reason)[:200])
        response.force_close()
        return response


class _Server(web.Server):
    def __call__(self) -> RequestHandler:
        return _Protocol(self, loop=self._loop, **self._kwargs)


class _Runner(web.AppRunner):
    async def _make_server(self) -> web.Server:
        server = await super()._make_server()
        server.__class__ = _Server  # the same server, handing connections to our protocol class
        return server


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
    return app


class HttpFrontend:
    """Serves the HTTP app on one address."""

    def __init__(self, *, app: web.Application, listen: HostPort) -> None:
        self.app = app
        self._listen = listen
        self._runner: web.BaseRunner | None = None
        self.address: HostPort | None = None

    async def start(self) -> None:
        self._runner = _Runner(
            self.app,
            handle_signals=False,
            access_log=None,  # no line per request; /metrics counts them
            max_line_size=MAX_REQUEST_LINE,
            max_field_size=MAX_HEADER_FIELD,
            max_headers=MAX_HEADERS,
            shutdown_timeout=3.0,  # what is still open after the drain gets 3 s, then is closed
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

    def begin_shutdown(self) -> None:
        """From now on /healthz answers 503, so load balancers take this replica out first, and
        open long polls answer at once."""
        self.app[STATE].shutting_down = True
        self.app[STORE].wake_waiters()

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

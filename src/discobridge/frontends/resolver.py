"""The HTTP resolver: service lists and endpoint documents, long polls, and a plain host:port."""

from __future__ import annotations

import functools
import re
import time
from collections.abc import Sequence

from aiohttp import web

from discobridge.frontends.health import not_ready_reason
from discobridge.frontends.keys import STATE, STORE, HttpState
from discobridge.frontends.params import generation, known_parameters
from discobridge.model import MAIN_PORT
from discobridge.render.resolver import RESOLVER, Document, Scope, document, render_service
from discobridge.snapshot import Snapshot
from discobridge.store import SnapshotStore

SCOPE_PARAMETERS = ("account", "region", "cluster")  # in Scope's order

MAX_WAIT_S = 300.0  # a long poll waits at most 5 minutes, as Consul's blocking queries do
_DURATION = re.compile(r"^(\d+(?:\.\d+)?)(ms|s|m)?$")
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, None: 1.0}


def add_routes(app: web.Application) -> None:
    app.router.add_get("/v1/services", handle_services)
    app.router.add_get("/v1/services/{name}", handle_service)
    app.router.add_get("/v1/resolve/{name}", handle_resolve)


def current_snapshot(request: web.Request) -> Snapshot:
    """The snapshot being served; 503 naming what it waits for before the first one."""
    snapshot = request.app[STORE].current
    if snapshot is None:
        raise web.HTTPServiceUnavailable(reason=not_ready_reason(request.app[STORE]))
    return snapshot


def send_document(request: web.Request, body: bytes, etag: str, headers: dict[str, str] | None = None) -> web.Response:
    """A JSON document, or 304 when the client already holds this version."""
    all_headers = {"ETag": etag, "Cache-Control": "no-cache", **(headers or {})}
    if _matches(request, etag):
        return web.Response(status=304, headers=all_headers)
    return web.Response(body=body, content_type="application/json", headers=all_headers)


async def send_parts(request: web.Request, parts: Sequence[bytes | memoryview], etag: str) -> web.StreamResponse:
    """A JSON document held as parts (never joined: each is bytes already held), or 304."""
    if len(parts) == 1:
        return send_document(request, bytes(parts[0]), etag)
    headers = {"ETag": etag, "Cache-Control": "no-cache"}
    if _matches(request, etag):
        return web.Response(status=304, headers=headers)
    response = web.StreamResponse(headers={**headers, "Content-Type": "application/json"})
    response.content_length = sum(len(part) for part in parts)
    await response.prepare(request)
    for part in parts:
        await response.write(part)
    await response.write_eof()
    return response


def _matches(request: web.Request, etag: str) -> bool:
    """If-None-Match uses the weak comparison (RFC 9110 13.1.2): W/ prefixes are ignored."""
    wanted = request.headers.get("If-None-Match", "")
    if not wanted:
        return False
    candidates = {tag.strip().removeprefix("W/") for tag in wanted.split(",")}
    return wanted.strip() == "*" or etag.removeprefix("W/") in candidates


async def handle_services(request: web.Request) -> web.Response:
    known_parameters(request)
    snapshot = current_snapshot(request)
    docs = snapshot.view(RESOLVER)
    age = request.app[STORE].age_s() or 0.0
    return send_document(request, docs.list_head + f"{age:.3f}".encode() + docs.list_tail, docs.list_etag)


async def handle_service(request: web.Request) -> web.Response:
    known_parameters(request, *SCOPE_PARAMETERS, "index", "wait")
    name = request.match_info["name"].lower()
    scope = _scope(request)
    if "index" in request.query:
        snapshot = await _long_poll(request, name, generation(request, "index"), _wait_s(request))
    else:
        snapshot = current_snapshot(request)
    service = snapshot.view(RESOLVER).services.get(name)
    if service is None:
        raise web.HTTPNotFound(reason=f"no service named {name!r}")
    doc: Document = service.by_scope.get(scope) or document(render_service(name, []))
    return send_document(request, doc.body, doc.etag, {"X-Discobridge-Index": str(snapshot.changed_at[name])})


def _wait_s(request: web.Request) -> float:
    text = request.query.get("wait", "5m")
    match = _DURATION.match(text)
    if match is None:
        raise web.HTTPBadRequest(reason=f'wait must be a duration such as "30s", "500ms" or "2m", got {text!r}')
    return min(float(match.group(1)) * _UNITS[match.group(2)], MAX_WAIT_S)


async def _long_poll(request: web.Request, name: str, index: int, wait_s: float) -> Snapshot:
    """Return once the service changed after generation `index`, when `wait_s` runs out, or when
    shutdown begins (so open long polls do not hold the process past its stop timeout)."""
    store, state = request.app[STORE], request.app[STATE]
    deadline = time.monotonic() + wait_s
    while not state.shutting_down:
        snapshot = store.current
        if snapshot is not None:
            changed = snapshot.changed_at.get(name)
            # A client index above ours means we restarted: its view is stale, answer at once.
            if changed is None or changed > index or index > snapshot.generation:
                return snapshot
        remaining = deadline - time.monotonic()
        generation = store.generation
        if remaining <= 0:
            break
        await store.wait_until(functools.partial(_moved_on, store, state, generation), remaining)
    return current_snapshot(request)


def _moved_on(store: SnapshotStore, state: HttpState, generation: int) -> bool:
    return store.generation > generation or state.shutting_down


async def handle_resolve(request: web.Request) -> web.Response:
    known_parameters(request, *SCOPE_PARAMETERS, "port")
    name = request.match_info["name"].lower()
    scope, port = _scope(request), request.query.get("port", MAIN_PORT)
    service = current_snapshot(request).view(RESOLVER).services.get(name)
    if service is None:
        raise web.HTTPNotFound(reason=f"no service named {name!r}")
    if port not in service.port_names:
        raise web.HTTPNotFound(reason=f"{name} has no port named {port[:63]!r}")
    serving = service.serving.get((scope, port), ())
    if not serving:
        where = "".join(f" in {key} {value!r}" for key, value in zip(SCOPE_PARAMETERS, scope, strict=True) if value)
        raise web.HTTPServiceUnavailable(reason=f"{name} has no endpoint to serve{where}: none, or every one draining")
    turns = request.app[STATE].resolve_turns
    turns[name, scope, port] += 1
    return web.Response(body=serving[turns[name, scope, port] % len(serving)], content_type="text/plain")


def _scope(request: web.Request) -> Scope:
    account, region, cluster = (request.query.get(key) for key in SCOPE_PARAMETERS)
    return account, region, cluster

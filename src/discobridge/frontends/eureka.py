"""Eureka's REST API, read side served from precomputed bytes, writes accepted as no-ops.

Mounted under /eureka/ (Spring Cloud's server) and /eureka/v2/ (Netflix's, eureka-js-client's
default), every path with and without a trailing slash. JSON when Accept contains "json",
otherwise XML, as the real server decides; gzip only when asked. Errors have empty bodies:
Spring's client reads error bodies and fails on anything it cannot parse.
"""

from __future__ import annotations

import asyncio
import gzip
import time
from collections import Counter
from collections.abc import Awaitable, Callable

from aiohttp import web

from discobridge.frontends.keys import METRICS, STORE
from discobridge.render.eureka import EUREKA, RETENTION_S, EurekaDocuments, Instance, delta, empty_documents
from discobridge.render.eureka_wire import Representations, assemble_json, assemble_xml, reconcile_hash, single

PREFIXES = ("/eureka", "/eureka/v2")
_DELTA_CACHE = web.AppKey("eureka_delta", dict)
_VIP_CACHE = web.AppKey("eureka_vips", dict)
_XML_CACHE = web.AppKey("eureka_plain_xml", dict)
_WRITES = web.AppKey("eureka_writes", Counter)
_EMPTY = web.AppKey("eureka_empty", EurekaDocuments)
_CLOCK: web.AppKey[Callable[[], float]] = web.AppKey("eureka_wall_clock")
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def add_routes(app: web.Application, wall_clock: Callable[[], float] = time.time) -> None:
    app[_DELTA_CACHE] = {}
    app[_VIP_CACHE] = {}
    app[_XML_CACHE] = {}
    app[_CLOCK] = wall_clock
    app[_WRITES] = Counter()
    # Before the first poll: an empty registry, never an error (py-eureka-client would stop for good).
    app[_EMPTY] = empty_documents(wall_clock())
    app[METRICS].count_from(
        "discobridge_eureka_writes",
        "Eureka writes from clients that still register, accepted and ignored, by operation.",
        ["operation"],
        lambda: {(k,): v for k, v in app[_WRITES].items()},
    )
    reads: list[tuple[str, Handler]] = [
        ("apps", handle_apps),
        ("apps/delta", handle_delta),
        ("apps/{app}", handle_app),
        ("apps/{app}/{id}", handle_instance),
        ("instances/{id}", handle_instance),
        ("vips/{vip}", handle_vip),
        ("svips/{vip}", handle_vip),
    ]
    writes: list[tuple[str, str, str, int]] = [
        ("POST", "apps/{app}", "register", 204),
        ("PUT", "apps/{app}/{id}", "heartbeat", 200),
        ("DELETE", "apps/{app}/{id}", "cancel", 200),
        ("PUT", "apps/{app}/{id}/status", "status_override", 200),
        ("DELETE", "apps/{app}/{id}/status", "status_override_delete", 200),
        ("PUT", "apps/{app}/{id}/metadata", "metadata", 200),
    ]
    for prefix in PREFIXES:
        for path, handler in reads:
            for suffix in ("", "/"):
                app.router.add_get(f"{prefix}/{path}{suffix}", handler)
        for method, path, operation, status in writes:
            for suffix in ("", "/"):
                app.router.add_route(method, f"{prefix}/{path}{suffix}", _accept_write(operation, status))


def _documents(request: web.Request) -> EurekaDocuments:
    snapshot = request.app[STORE].current
    return snapshot.view(EUREKA) if snapshot is not None else request.app[_EMPTY]


async def _send(request: web.Request, representations: Representations) -> web.Response:
    """The form the client asked for (JSON or XML, gzip or not), or 304 if it has this one."""
    wants_json = "json" in request.headers.get("Accept", "")
    wants_gzip = accepts_gzip(request.headers.get("Accept-Encoding", ""))
    body = {
        (True, True): representations.json_gzip,
        (True, False): representations.json,
        (False, True): representations.xml_gzip,
        (False, False): representations.xml,
    }[(wants_json, wants_gzip)]
    if body is None:
        body = await _unpacked_xml(request, representations)
    etag = f'"{representations.etag}-{"j" if wants_json else "x"}{"z" if wants_gzip else ""}"'
    headers = {"ETag": etag, "Vary": "Accept, Accept-Encoding", "Cache-Control": "no-cache"}
    if etag in request.headers.get("If-None-Match", ""):
        return web.Response(status=304, headers=headers)
    if wants_gzip:
        headers["Content-Encoding"] = "gzip"
    content_type = "application/json" if wants_json else "application/xml"
    return web.Response(body=body, headers={**headers, "Content-Type": content_type})


def accepts_gzip(header: str) -> bool:
    """Whether an Accept-Encoding header takes gzip (RFC 9110 12.5.3: "gzip;q=0" refuses it, and
    "*" takes it unless gzip itself is refused)."""
    weights: dict[str, float] = {}
    for item in header.lower().split(","):
        coding, _, parameters = item.partition(";")
        weight = 1.0
        for parameter in parameters.split(";"):
            name, _, value = parameter.strip().partition("=")
            if name == "q":
                try:
                    weight = float(value)
                except ValueError:
                    weight = 0.0
        weights[coding.strip()] = weight
    gzip_weight = weights.get("gzip", weights.get("x-gzip", weights.get("*", 0.0)))
    return gzip_weight > 0


async def _unpacked_xml(request: web.Request, representations: Representations) -> bytes:
    """The full registry's XML for a client that takes no gzip (rare: py-eureka-client, the XML
    client, asks for gzip): unpacked once per registry version and kept for the next such client."""
    cache = request.app[_XML_CACHE]
    if cache.get("etag") != representations.etag:
        cache.clear()
        # Tens of milliseconds at 10,000 instances: in a worker thread, not on the event loop.
        unpacked = await asyncio.to_thread(gzip.decompress, representations.xml_gzip)
        cache["etag"], cache["xml"] = representations.etag, unpacked
    xml: bytes = cache["xml"]
    return xml


def _not_found() -> web.Response:
    return web.Response(status=404)


async def handle_apps(request: web.Request) -> web.Response:
    return await _send(request, _documents(request).apps)


async def handle_delta(request: web.Request) -> web.Response:
    docs, now = _documents(request), request.app[_CLOCK]()
    if not docs.changes or docs.changes[0].at >= now - RETENTION_S:
        return await _send(request, docs.delta)
    # Changes aged out while the registry stood still: drop them, as the real server's
    # retention timer would, once per snapshot and second.
    cache = request.app[_DELTA_CACHE]
    key = (docs.version, int(now))
    if key not in cache:
        cache.clear()
        cache[key] = delta(docs.version, docs.hashcode, docs.changes, now)
    return await _send(request, cache[key])


def _one(request: web.Request, forms: tuple[bytes, bytes]) -> web.Response:
    """A single application or instance under its root key, JSON or XML (API calls, not polls)."""
    if "json" in request.headers.get("Accept", ""):
        return web.Response(body=forms[0], content_type="application/json")
    return web.Response(body=forms[1], content_type="application/xml")


async def handle_app(request: web.Request) -> web.Response:
    name = request.match_info["app"].upper()
    docs = _documents(request)
    instances = docs.applications.get(name)
    if not instances:
        return _not_found()
    return _one(request, single("application", docs.pieces(instances), name))


def _find(docs: EurekaDocuments, instance_id: str, app: str | None = None) -> Instance | None:
    for name, instances in docs.applications.items():
        if app is None or name == app:
            for instance in instances:
                if instance.instance_id == instance_id:
                    return instance
    return None


async def handle_instance(request: web.Request) -> web.Response:
    """`instances/{id}`, and `apps/{app}/{id}` (then only within that app)."""
    app = request.match_info.get("app")
    docs = _documents(request)
    found = _find(docs, request.match_info["id"], app.upper() if app else None)
    if found is None:
        return _not_found()
    return _one(request, single("instance", docs.pieces([found])))


async def handle_vip(request: web.Request) -> web.Response:
    """vips/{vip} and svips/{svip}: the registry of one VIP (our VIP is the service name), with
    that subset's own apps__hashcode, as the real server computes it. Polled by Java clients set
    to refresh a single VIP, so each VIP's document is rendered once per snapshot."""
    app = request.match_info["vip"].upper()
    docs = _documents(request)
    instances = docs.applications.get(app)
    if not instances:
        return _not_found()
    cache = request.app[_VIP_CACHE]
    if cache.get("version") != docs.version:
        cache.clear()
        cache["version"] = docs.version
    if app not in cache:
        hashcode = reconcile_hash(i.status for i in instances)
        json_block, xml_block = docs.block_bytes(app)
        as_json = assemble_json(docs.version, hashcode, [json_block])[0]
        cache[app] = Representations.of(as_json, assemble_xml(docs.version, hashcode, [xml_block]))
    return await _send(request, cache[app])


def _accept_write(operation: str, status: int) -> Handler:
    """Registration, heartbeats and status changes: answered as the real server would, ignored."""

    async def handle(request: web.Request) -> web.Response:
        request.app[_WRITES][operation] += 1
        return web.Response(status=status)

    return handle

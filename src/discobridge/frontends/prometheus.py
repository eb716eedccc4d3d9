"""Prometheus HTTP service discovery: `GET /v1/prometheus/targets`, the lists rendered once per
snapshot (render.prometheus), narrowed by `?port=`, `?service=` and `?cluster=`."""

from __future__ import annotations

from aiohttp import web

from discobridge.frontends.health import not_ready_reason
from discobridge.frontends.keys import STORE
from discobridge.model import MAIN_PORT
from discobridge.render.prometheus import PROMETHEUS

_PARAMETERS = frozenset({"port", "service", "cluster"})


def add_routes(app: web.Application) -> None:
    app.router.add_get("/v1/prometheus/targets", handle_targets)


async def handle_targets(request: web.Request) -> web.Response:
    """Once a snapshot exists this never answers an error: Prometheus would keep stale targets.
    X-Prometheus-Refresh-Interval-Seconds is information only: every list is precomputed."""
    unknown = sorted(set(request.query) - _PARAMETERS)
    if unknown:
        raise web.HTTPBadRequest(
            reason=f"unknown query parameter {unknown[0]!r}: this path takes port, service, cluster"
        )
    snapshot = request.app[STORE].current
    if snapshot is None:
        raise web.HTTPServiceUnavailable(reason=not_ready_reason(request.app[STORE]))
    service = request.query.get("service")
    body, etag = snapshot.view(PROMETHEUS).select(
        request.query.get("port", MAIN_PORT), None if service is None else service.lower(), request.query.get("cluster")
    )
    headers = {"ETag": etag, "Cache-Control": "no-cache"}
    if request.headers.get("If-None-Match", "").strip() == etag:
        return web.Response(status=304, headers=headers)
    return web.Response(body=body, content_type="application/json", headers=headers)

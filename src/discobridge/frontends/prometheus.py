"""Prometheus HTTP service discovery: `GET /v1/prometheus/targets`, the lists rendered once per
snapshot (render.prometheus), narrowed by `?port=`, `?service=` and `?cluster=`."""

from __future__ import annotations

from aiohttp import web

from discobridge.frontends.params import known_parameters
from discobridge.frontends.resolver import current_snapshot, send_parts
from discobridge.model import MAIN_PORT
from discobridge.render.prometheus import PROMETHEUS


def add_routes(app: web.Application) -> None:
    app.router.add_get("/v1/prometheus/targets", handle_targets)


async def handle_targets(request: web.Request) -> web.StreamResponse:
    """Once a snapshot exists this never answers an error: Prometheus would keep stale targets.
    X-Prometheus-Refresh-Interval-Seconds is information only: every list is precomputed."""
    known_parameters(request, "port", "service", "cluster")
    snapshot = current_snapshot(request)
    service = request.query.get("service")
    parts, etag = snapshot.view(PROMETHEUS).select(
        request.query.get("port", MAIN_PORT), None if service is None else service.lower(), request.query.get("cluster")
    )
    return await send_parts(request, parts, etag)

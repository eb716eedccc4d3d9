"""/healthz for load balancers, /metrics for Prometheus, and / for people."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from discobridge.frontends.keys import CONFIG, METRICS, STATE, STORE
from discobridge.metrics import Metrics
from discobridge.render.status import render_status_page
from discobridge.snapshot import SnapshotStore


def add_routes(app: web.Application) -> None:
    app.router.add_get("/healthz", handle_healthz)
    app.router.add_get("/metrics", handle_metrics)
    app.router.add_get("/", handle_status_page)
    _export_snapshot_metrics(app[METRICS], app[STORE])


def _export_snapshot_metrics(metrics: Metrics, store: SnapshotStore) -> None:
    """Snapshot age and endpoints by service and health, computed when Prometheus scrapes."""
    metrics.gauge_from(
        "discobridge_snapshot_age_seconds",
        "Seconds since the oldest source's last good refresh (how stale the served data is).",
        [],
        lambda: {(): store.age_s() or 0.0} if store.current else {},
    )

    def endpoints() -> dict[tuple[str, str], float]:
        counts: dict[tuple[str, str], float] = {}
        for service in store.current.services.values() if store.current else ():
            for endpoint in service.endpoints:
                key = (service.name, str(endpoint.health))
                counts[key] = counts.get(key, 0) + 1
        return counts

    metrics.gauge_from(
        "discobridge_snapshot_endpoints",
        "Endpoints in the served snapshot, by service and health.",
        ["service", "health"],
        endpoints,
    )


@dataclass(frozen=True, slots=True)
class Verdict:
    healthy: bool
    reason: str
    age_s: float | None


def judge(store: SnapshotStore, *, max_staleness_s: float, shutting_down: bool) -> Verdict:
    """Whether this replica should receive traffic, and why not."""
    age = store.age_s()
    if shutting_down:
        return Verdict(False, "shutting down", age)
    if store.current is None or age is None:
        return Verdict(False, "no data yet: the first poll of AWS has not completed" + _errors(store), age)
    if age > max_staleness_s:
        return Verdict(False, f"data is {age:.1f} s old, over the {max_staleness_s:g} s limit" + _errors(store), age)
    return Verdict(True, "ok", age)


def _errors(store: SnapshotStore) -> str:
    errors = [f"{s.source}: {s.last_error}" for s in store.status.values() if s.consecutive_failures]
    return f" ({'; '.join(errors)})" if errors else ""


def _sources(store: SnapshotStore) -> dict[str, dict[str, Any]]:
    now_age = store.age_of
    return {
        str(source): {
            "age_s": _rounded(now_age(source)),
            "endpoints": status.endpoints,
            "consecutive_failures": status.consecutive_failures,
            "last_error": status.last_error,
            "warnings": list(status.warnings),
        }
        for source, status in store.status.items()
    }


def _ago(age_s: float | None) -> str:
    return "never" if age_s is None else f"{age_s:.1f} s ago"


def _rounded(value: float | None) -> float | None:
    return None if value is None else round(value, 3)


async def handle_healthz(request: web.Request) -> web.Response:
    store = request.app[STORE]
    verdict = judge(
        store,
        max_staleness_s=request.app[CONFIG].health.max_staleness_s,
        shutting_down=request.app[STATE].shutting_down,
    )
    body = {
        "status": "ok" if verdict.healthy else "unavailable",
        "reason": verdict.reason,
        "age_s": _rounded(verdict.age_s),
        "generation": store.generation,
        "sources": _sources(store),
    }
    return web.json_response(body, status=200 if verdict.healthy else 503, headers={"Cache-Control": "no-store"})


async def handle_metrics(request: web.Request) -> web.Response:
    body = generate_latest(request.app[METRICS].registry)
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


async def handle_status_page(request: web.Request) -> web.Response:
    store = request.app[STORE]
    snapshot = store.current
    verdict = judge(
        store,
        max_staleness_s=request.app[CONFIG].health.max_staleness_s,
        shutting_down=request.app[STATE].shutting_down,
    )
    sources = [
        (str(source), _ago(store.age_of(source)), "; ".join(filter(None, [status.last_error, *status.warnings])))
        for source, status in store.status.items()
    ]
    page = render_status_page(
        sections=snapshot.status_sections if snapshot else b"<p>Waiting for the first poll of AWS.</p>",
        generation=store.generation,
        age_s=verdict.age_s,
        healthy=verdict.healthy,
        verdict="serving" if verdict.healthy else verdict.reason,
        sources=sources,
    )
    return web.Response(body=page, content_type="text/html", charset="utf-8", headers={"Cache-Control": "no-store"})

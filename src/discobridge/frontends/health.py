"""/healthz for load balancers, /metrics for Prometheus, and / for people: all per partition."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from discobridge.frontends.keys import CONFIG, METRICS, STATE, STORE
from discobridge.frontends.params import generation
from discobridge.metrics import Metrics
from discobridge.render.status import STATUS_SECTIONS, render_status_page
from discobridge.store import PartitionStatus, SnapshotStore


def add_routes(app: web.Application) -> None:
    app.router.add_get("/healthz", handle_healthz)
    app.router.add_get("/metrics", handle_metrics)
    app.router.add_get("/", handle_status_page)
    _export_snapshot_metrics(app[METRICS], app[STORE])


def _export_snapshot_metrics(metrics: Metrics, store: SnapshotStore) -> None:
    """Ages, generation and endpoints by service and health, computed when Prometheus scrapes."""
    metrics.gauge_from(
        "discobridge_snapshot_age_seconds",
        "Seconds since the oldest served partition's last good refresh (how stale the served data is).",
        [],
        lambda: {(): store.age_s() or 0.0} if store.current else {},
    )
    metrics.gauge_from(
        "discobridge_snapshot_generation",
        "Generation of the snapshot being served (0 before the first).",
        [],
        lambda: {(): float(store.generation)},
    )
    metrics.gauge_from(
        "discobridge_partition_age_seconds",
        "Seconds since each partition's last good refresh (absent while it has none).",
        ["source", "partition"],
        lambda: {
            (key.source, key.id): age
            for key in store.partitions
            if (age := store.age_of(key)) is not None and store.partitions[key].result is not None
        },
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


def not_ready_reason(store: SnapshotStore) -> str:
    """Why nothing is served yet: the partitions (and listings) the first snapshot waits for."""
    pending = store.pending()
    waiting = "; ".join(pending) if pending else "building it"
    return f"no data yet: the first snapshot waits for every partition's first poll of AWS ({waiting})"


def judge(store: SnapshotStore, *, max_staleness_s: float, shutting_down: bool) -> Verdict:
    """Whether this replica should receive traffic, and why not: every partition named."""
    age = store.age_s()
    if shutting_down:
        return Verdict(False, "shutting down", age)
    if store.current is None:
        return Verdict(False, not_ready_reason(store), age)
    problems = [p for status in store.partitions.values() if (p := _problem(store, status, max_staleness_s))]
    problems += [
        f"{scope}: never listed ({attempts.last_error or 'no answer yet'})"
        for scope, attempts in store.listings.items()
        if scope not in store.listed_scopes()
    ]
    if problems:
        return Verdict(False, "; ".join(problems), age)
    return Verdict(True, "ok", age)


def _problem(store: SnapshotStore, status: PartitionStatus, max_staleness_s: float) -> str | None:
    error = f" (last error: {status.attempts.last_error})" if status.attempts.consecutive_failures else ""
    if status.result is None:
        return f"{status.key}: no data{error or ' yet'}"
    age = store.age_of(status.key)
    if age is not None and age > max_staleness_s:
        return f"{status.key}: data is {age:.1f} s old, over the {max_staleness_s:g} s limit{error}"
    return None


def _partitions(store: SnapshotStore) -> dict[str, dict[str, Any]]:
    return {
        key.id: {
            "partition": str(key),
            "age_s": _rounded(store.age_of(key)) if status.result is not None else None,
            "endpoints": len(status.result.endpoints) if status.result else 0,
            "consecutive_failures": status.attempts.consecutive_failures,
            "last_error": status.attempts.last_error,
            "warnings": list(status.result.warnings) if status.result else [],
        }
        for key, status in store.partitions.items()
    }


def _ago(age_s: float | None) -> str:
    return "never" if age_s is None else f"{age_s:.1f} s ago"


def _rounded(value: float | None) -> float | None:
    return None if value is None else round(value, 3)


def _verdict(request: web.Request) -> Verdict:
    return judge(
        request.app[STORE],
        max_staleness_s=request.app[CONFIG].health.max_staleness_s,
        shutting_down=request.app[STATE].shutting_down,
    )


async def handle_healthz(request: web.Request) -> web.Response:
    store = request.app[STORE]
    verdict = _verdict(request)
    body = {
        "status": "ok" if verdict.healthy else "unavailable",
        "reason": verdict.reason,
        "age_s": _rounded(verdict.age_s),
        "generation": store.generation,
        "partitions": _partitions(store),
        "warnings": list(store.current.warnings) if store.current else [],
    }
    return web.json_response(body, status=200 if verdict.healthy else 503, headers={"Cache-Control": "no-store"})


async def handle_metrics(request: web.Request) -> web.Response:
    body = generate_latest(request.app[METRICS].registry)
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


STATUS_WAIT_S = 30.0  # the longest a status page's refresh waits for a newer snapshot


async def handle_status_page(request: web.Request) -> web.Response:
    store, state = request.app[STORE], request.app[STATE]
    if "after" in request.query:  # the page's own refresh: answer once there is something newer
        seen = generation(request, "after")
        state.status_refreshes += 1
        state.on_status_refresh()
        if seen <= store.generation:  # above it: we restarted since that page loaded, answer at once
            await store.wait_until(lambda: store.generation > seen or state.shutting_down, STATUS_WAIT_S)
    snapshot = store.current
    verdict = _verdict(request)
    cards = [
        (
            str(key),
            _ago(store.age_of(key)) if status.result is not None else "never",
            "; ".join(filter(None, [status.attempts.last_error, *(status.result.warnings if status.result else ())])),
        )
        for key, status in store.partitions.items()
    ]
    if snapshot is not None and snapshot.warnings:
        cards.append(("the data", "", "; ".join(snapshot.warnings)))
    page = render_status_page(
        documents=snapshot.view(STATUS_SECTIONS) if snapshot else None,
        generation=store.generation,
        age_s=verdict.age_s,
        healthy=verdict.healthy,
        verdict="serving" if verdict.healthy else verdict.reason,
        sources=cards,
    )
    return web.Response(body=page, content_type="text/html", charset="utf-8", headers={"Cache-Control": "no-store"})

"""Services -> the HTML status page: one self-contained document, no external assets."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from html import escape

from discobridge.model import Health, Service
from discobridge.render import ViewKey
from discobridge.render.memo import PerService

_STYLE = """
body{font:14px/1.45 system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:24px;color:#1d2733;background:#f6f8fa}
h1{font-size:20px;margin:0 0 4px} .meta{color:#566;margin-bottom:16px}
.sources{display:flex;gap:12px;flex-wrap:wrap;margin-bottom:20px}
.source{background:#fff;border:1px solid #d8dee4;border-radius:6px;padding:8px 12px}
.ok{color:#1a7f37} .bad{color:#cf222e} .warn{color:#9a6700}
section{background:#fff;border:1px solid #d8dee4;border-radius:6px;margin-bottom:14px}
section h2{font-size:15px;margin:0;padding:8px 12px;border-bottom:1px solid #d8dee4;background:#f0f3f6}
table{border-collapse:collapse;width:100%} td,th{padding:4px 12px;text-align:left;border-top:1px solid #eef1f4}
th{font-weight:600;color:#566} code{font:13px ui-monospace,SFMono-Regular,Menlo,monospace}
.healthy{color:#1a7f37} .unhealthy{color:#cf222e} .draining{color:#9a6700}
"""

_HEALTH_ORDER = {Health.HEALTHY: 0, Health.UNHEALTHY: 1, Health.DRAINING: 2}


STATUS_SECTIONS: ViewKey[bytes] = ViewKey("status-sections")


class StatusSections:
    """The per-service tables of the status page: each rendered once while its service is unchanged."""

    key = STATUS_SECTIONS

    def __init__(self) -> None:
        self._per_service = PerService(render_service_section)

    def __call__(self, services: Mapping[str, Service], generation: int, previous: bytes | None) -> bytes:
        if not services:
            return b"<p>No services found yet.</p>"
        sections = self._per_service(services)
        return b"".join(sections[name] for name in sorted(sections))


def render_service_section(service: Service) -> bytes:
    name = service.name
    healthy = sum(e.health is Health.HEALTHY for e in service.endpoints)
    rows = "".join(
        f"<tr><td><code>{escape(e.address)}</code></td><td class='{e.health}'>{e.health}</td>"
        f"<td>{escape(e.az or '-')}</td><td>{escape(e.cluster or '-')}</td><td>{e.source}</td>"
        f"<td><code>{escape(e.task_id or '-')}</code></td></tr>"
        for e in sorted(service.endpoints, key=lambda e: _HEALTH_ORDER[e.health])
    )
    return (
        f"<section id='{escape(name)}'><h2>{escape(name)} "
        f"<span class='meta'>{healthy}/{len(service.endpoints)} healthy</span></h2>"
        "<table><tr><th>endpoint</th><th>health</th><th>zone</th><th>cluster</th><th>source</th>"
        f"<th>task</th></tr>{rows}</table></section>"
    ).encode()


def render_status_page(
    *,
    sections: bytes,
    generation: int,
    age_s: float | None,
    healthy: bool,
    verdict: str,
    sources: Sequence[tuple[str, str, str | None]],
) -> bytes:
    """The whole page: a header from the current state around the pre-rendered sections."""
    age = "no data yet" if age_s is None else f"data {age_s:.1f} s old"
    cards = "".join(
        f"<div class='source'><b>{escape(name)}</b> · last good poll {escape(when)}"
        + (f"<br><span class='bad'>{escape(error)}</span>" if error else " · <span class='ok'>ok</span>")
        + "</div>"
        for name, when, error in sources
    )
    status = f"<span class='{'ok' if healthy else 'bad'}'>{escape(verdict)}</span>"
    head = (
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>"
        "<meta name='viewport' content='width=device-width,initial-scale=1'>"
        f"<title>discobridge</title><style>{_STYLE}</style></head><body>"
        f"<h1>discobridge</h1><div class='meta'>{status} · snapshot {generation} · {age}</div>"
        f"<div class='sources'>{cards}</div>"
    )
    return head.encode() + sections + b"</body></html>"

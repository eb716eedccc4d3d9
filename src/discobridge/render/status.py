"""Services -> the HTML status page: one self-contained document, no external assets."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
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
section.idle{border-color:#cf222e} section.idle h2{background:#ffebe9;color:#cf222e}
#filter{font:inherit;padding:4px 8px;margin:4px 0 12px;width:260px} .summary{margin-bottom:12px;font-weight:600}
"""

_HEALTH_ORDER = {Health.HEALTHY: 0, Health.UNHEALTHY: 1, Health.DRAINING: 2}


@dataclass(frozen=True, slots=True)
class StatusDocuments:
    """The per-service part of the status page, and the counts of its summary line."""

    # Each service's table, idle services first: the page is assembled per request anyway, so
    # the tables are joined only then (a joined copy would double them: megabytes at scale).
    sections: tuple[bytes, ...]
    services: int
    endpoints: int
    serving: int
    idle: int  # services serving nothing: listed first, in red


STATUS_SECTIONS: ViewKey[StatusDocuments] = ViewKey("status-sections")


class StatusSections:
    """The per-service tables of the status page: each rendered once while its service is unchanged."""

    key = STATUS_SECTIONS

    def __init__(self) -> None:
        self._per_service = PerService(render_service_section)

    def __call__(
        self, services: Mapping[str, Service], generation: int, previous: StatusDocuments | None
    ) -> StatusDocuments:
        if not services:
            return StatusDocuments((b"<p>No services found yet.</p>",), 0, 0, 0, 0)
        sections = self._per_service(services)
        # Services that serve nothing first: they are what someone opening this page looks for.
        order = sorted(services, key=lambda name: (bool(services[name].serving), name))
        return StatusDocuments(
            sections=tuple(sections[name] for name in order),
            services=len(services),
            endpoints=sum(len(s.endpoints) for s in services.values()),
            serving=sum(len(s.serving) for s in services.values()),
            idle=sum(not s.serving for s in services.values()),
        )


def render_service_section(service: Service) -> bytes:
    name = service.name
    healthy = sum(e.health is Health.HEALTHY for e in service.endpoints)
    served = set(service.serving)
    fail_open = bool(served) and not healthy
    rows = "".join(
        f"<tr><td><code>{escape(e.address)}</code></td><td class='{e.health}'>{e.health}</td>"
        f"<td>{_served(e in served, fail_open)}</td>"
        f"<td>{escape(e.az or '-')}</td><td>{escape(e.cluster or '-')}</td>"
        f"<td>{escape('/'.join(filter(None, (e.account, e.region))) or '-')}</td><td>{e.source}</td>"
        f"<td><code>{escape(e.task_id or '-')}</code></td></tr>"
        for e in sorted(service.endpoints, key=lambda e: _HEALTH_ORDER[e.health])
    )
    state = (
        "<span class='bad'>serving nothing</span>"
        if not served
        else f"{len(served)} served" + (" <span class='warn'>(fail open: none is healthy)</span>" if fail_open else "")
    )
    return (
        f"<section id='{escape(name)}' class='{'idle' if not served else 'live'}'><h2>{escape(name)} "
        f"<span class='meta'>{healthy}/{len(service.endpoints)} healthy · {state}</span></h2>"
        "<table><tr><th>endpoint</th><th>health</th><th>served</th><th>zone</th><th>cluster</th><th>account</th><th>source</th>"
        f"<th>task</th></tr>{rows}</table></section>"
    ).encode()


def _served(served: bool, fail_open: bool) -> str:
    if not served:
        return "<span class='meta'>no</span>"
    return "<span class='warn'>yes, fail open</span>" if fail_open else "yes"


# Refreshes the page in place: a long poll of "/?after=<generation>" answers once a newer snapshot
# is out (or after 30 s), and its #content replaces this one's, so nothing flashes and the filter
# stays applied. The first poll starts at once; later ones a second after each answer.
_SCRIPT = """
(function(){
var box=document.getElementById('filter');
function filter(){var q=box.value.trim().toLowerCase();
document.querySelectorAll('#content section').forEach(function(s){s.hidden=q!==''&&s.id.indexOf(q)<0;});}
box.addEventListener('input',filter);
function poll(){var g=document.getElementById('content').dataset.generation;
fetch('/?after='+g,{cache:'no-store'}).then(function(r){return r.text();}).then(function(t){
var next=new DOMParser().parseFromString(t,'text/html').getElementById('content');
if(next){document.getElementById('content').replaceWith(next);filter();}
setTimeout(poll,1000);}).catch(function(){setTimeout(poll,5000);});}
poll();})();
"""


def render_status_page(
    *,
    documents: StatusDocuments | None,
    generation: int,
    age_s: float | None,
    healthy: bool,
    verdict: str,
    sources: Sequence[tuple[str, str, str | None]],
) -> bytes:
    """The whole page: a header from the current state around the pre-rendered sections."""
    age = "no data yet" if age_s is None else f"data {age_s:.1f} s old"
    failing = sorted(sources, key=lambda source: not source[2])  # sources with a problem first
    cards = "".join(
        f"<div class='source'><b>{escape(name)}</b>"
        + (f" · last good poll {escape(when)}" if when else "")
        + (f"<br><span class='bad'>{escape(error)}</span>" if error else " · <span class='ok'>ok</span>")
        + "</div>"
        for name, when, error in failing
    )
    status = f"<span class='{'ok' if healthy else 'bad'}'>{escape(verdict)}</span>"
    sections: tuple[bytes, ...]
    if documents is None:
        summary, sections = "", (b"<p>Waiting for the first poll of AWS.</p>",)
    else:
        problems = documents.idle + sum(1 for _, _, error in sources if error)
        summary = (
            f"<div class='summary' id='summary'>{documents.services} services · {documents.endpoints} endpoints · "
            f"{documents.serving} serving · <span class='{'bad' if problems else 'ok'}'>{problems} problems</span>"
            "</div>"
        )
        sections = documents.sections
    head = (
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>"
        "<meta name='viewport' content='width=device-width,initial-scale=1'>"
        f"<title>discobridge</title><style>{_STYLE}</style></head><body>"
        "<h1>discobridge</h1><input id='filter' type='search' placeholder='filter services' autocomplete='off'>"
        f"<div id='content' data-generation='{generation}'>"
        f"<div class='meta'>{status} · snapshot {generation} · {age}</div>{summary}"
        f"<div class='sources'>{cards}</div>"
    )
    return b"".join((head.encode(), *sections, b"</div><script>", _SCRIPT.encode(), b"</script></body></html>"))

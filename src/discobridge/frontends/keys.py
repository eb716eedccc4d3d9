"""Typed keys under which the HTTP app keeps its collaborators, and its mutable serving state."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

from aiohttp import web

from discobridge.config import Config
from discobridge.metrics import Metrics
from discobridge.store import SnapshotStore


@dataclass
class HttpState:
    shutting_down: bool = False
    # By service, scope (account, region, cluster) and port: only those that have endpoints to serve.
    resolve_turns: Counter[tuple[str, tuple[str | None, str | None, str | None], str]] = field(default_factory=Counter)
    status_refreshes: int = 0  # how often a status page has asked to be refreshed (begun, not answered)
    # Called as each such request begins: a hook for tests, which would otherwise have nothing to
    # wait on (waking every waiter per request would hand any client a cheap amplifier).
    on_status_refresh: Callable[[], None] = lambda: None


STORE = web.AppKey("store", SnapshotStore)
METRICS = web.AppKey("metrics", Metrics)
CONFIG = web.AppKey("config", Config)
STATE = web.AppKey("state", HttpState)

"""How late the event loop runs: every DNS and HTTP answer waits behind whatever holds it."""

from __future__ import annotations

import asyncio
import time

import structlog
from prometheus_client import Histogram

log = structlog.get_logger(__name__)

INTERVAL_S = 0.05
_STALL_S = 0.1  # a lag this long is logged (at debug): something ran on the loop it should not


async def watch_loop_lag(histogram: Histogram, interval_s: float = INTERVAL_S) -> None:
    """Sleep `interval_s` again and again and record how much later than asked each wake-up is."""
    while True:
        started = time.perf_counter()
        await asyncio.sleep(interval_s)
        lag = max(0.0, time.perf_counter() - started - interval_s)
        histogram.observe(lag)
        if lag > _STALL_S:
            log.debug("event_loop_stalled", duration_s=round(lag, 3))

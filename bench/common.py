"""What the benchmark drivers and servers share: ports, CPU accounting, serving until SIGTERM."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
from collections.abc import Iterable
from pathlib import Path
from typing import Protocol

from discobridge.model import LOCAL_ACCOUNT, Endpoint, PartitionKey, PartitionResult
from discobridge.render.dns import DnsRenderer
from discobridge.render.eureka import EurekaRenderer
from discobridge.render.resolver import ResolverRenderer
from discobridge.render.status import StatusSections
from discobridge.store import SnapshotStore

TICKS = os.sysconf("SC_CLK_TCK")


class Frontend(Protocol):
    async def start(self) -> None: ...
    async def stop(self) -> None: ...


_HANDED_OUT: set[int] = set()


def free_port() -> int:
    """A port free for both UDP and TCP on 127.0.0.1, and not handed out before by this process."""
    for _ in range(100):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp, socket.socket() as tcp:
            udp.bind(("127.0.0.1", 0))
            port = int(udp.getsockname()[1])
            try:
                tcp.bind(("127.0.0.1", port))
            except OSError:
                continue
            if port not in _HANDED_OUT:
                _HANDED_OUT.add(port)
                return port
    raise OSError("no port free for both UDP and TCP")


def cpu_seconds(*pids: int) -> float:
    """utime + stime of the processes (all their threads), from /proc."""
    ticks = 0
    for pid in pids:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        ticks += int(fields[11]) + int(fields[12])
    return ticks / TICKS


async def serve_until_sigterm(frontend: Frontend) -> None:
    await frontend.start()
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    print("ready", flush=True)
    await stop.wait()
    await frontend.stop()


BENCH_PARTITION = PartitionKey("ecs", LOCAL_ACCOUNT, "us-east-1", "cluster", "bench")


def serving_store(endpoints: Iterable[Endpoint], zone: str = "bench.test") -> SnapshotStore:
    """A store holding one snapshot of `endpoints` in one partition, rendered by every renderer
    the daemon registers, as the daemon would hold it after a poll."""
    renderers = [DnsRenderer(zone=zone, ttl_s=5), ResolverRenderer(), StatusSections(), EurekaRenderer()]
    store = SnapshotStore(renderers=renderers, scopes={BENCH_PARTITION.scope: "bench"})
    store.listed(BENCH_PARTITION.scope, [BENCH_PARTITION])
    store.publish(BENCH_PARTITION, PartitionResult(tuple(endpoints), 0.0))
    return store

"""What the benchmark drivers and servers share: ports, CPU accounting, serving until SIGTERM."""

from __future__ import annotations

import asyncio
import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, Protocol

from discobridge.model import LOCAL_ACCOUNT, Endpoint, PartitionKey, PartitionResult
from discobridge.render.dns import DnsRenderer
from discobridge.render.eureka import EurekaRenderer
from discobridge.render.resolver import ResolverRenderer
from discobridge.render.status import StatusSections
from discobridge.store import SnapshotStore

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the repository: tests.helpers
from tests.helpers import free_dns_port

TICKS = os.sysconf("SC_CLK_TCK")


class Frontend(Protocol):
    async def start(self) -> None: ...
    async def stop(self) -> None: ...


_HANDED_OUT: set[int] = set()


def free_port() -> int:
    """A port free for both UDP and TCP on 127.0.0.1, and not handed out before by this process."""
    for _ in range(100):
        port = free_dns_port()
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


class DaemonProcess:
    """`discobridge run` as a process, its JSON log read into events as they come."""

    def __init__(self, config: Path) -> None:
        self.started = time.monotonic()
        env = {**os.environ, "AWS_EC2_METADATA_DISABLED": "true"}
        self.process = subprocess.Popen(
            [sys.executable, "-m", "discobridge", "run", "-c", str(config)],
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        self.events: queue.Queue[tuple[float, dict[str, Any]]] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()
        self.peak_rss_mb = 0.0
        threading.Thread(target=self._sample, daemon=True).start()

    def _read(self) -> None:
        assert self.process.stderr is not None
        for line in self.process.stderr:
            if line.startswith("{"):
                self.events.put((time.monotonic(), json.loads(line)))

    def _sample(self) -> None:
        while self.process.poll() is None:
            self.peak_rss_mb = max(self.peak_rss_mb, self.rss_mb())
            time.sleep(0.2)

    def rss_mb(self) -> float:
        try:
            for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
        except OSError:
            pass
        return 0.0

    def wait(
        self, event: str, timeout: float, where: Callable[[dict[str, Any]], bool] = lambda e: True
    ) -> tuple[float, dict[str, Any]]:
        deadline = time.monotonic() + timeout
        while True:
            at, found = self.events.get(timeout=max(0.1, deadline - time.monotonic()))
            if found.get("event") == event and where(found):
                return at, found

    def stop(self) -> None:
        self.process.send_signal(signal.SIGTERM)
        self.process.wait(timeout=60)


def metrics(port: int) -> dict[str, float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        text = response.read().decode()
    found: dict[str, float] = {}
    for line in text.splitlines():
        if line.startswith(
            ("discobridge_aws_calls_total{", "discobridge_aws_token_wait_seconds_total{", "discobridge_event_loop_lag")
        ):
            name, value = line.rsplit(" ", 1)
            found[name] = float(value)
    return found


def calls_by_operation(sample: dict[str, float]) -> dict[str, float]:
    out: dict[str, float] = {}
    for name, value in sample.items():
        if name.startswith("discobridge_aws_calls_total{"):
            operation = name.split('operation="', 1)[1].split('"', 1)[0]
            out[operation] = out.get(operation, 0) + value
    return out


def daemon_config(
    directory: Path,
    aws_url: str,
    dns_port: int,
    http_port: int,
    *,
    zone: str,
    cluster: str,
    aws: str = "",
    extra: str = "",
) -> Path:
    """The config a benchmark's daemon runs with: one cluster of the fake AWS, loopback listeners,
    a snapshot file in `directory`, and staleness far enough off that a slow poll of a large
    estate is not an outage. `aws` adds lines to [aws]; `extra` adds tables."""
    path = directory / "config.toml"
    path.write_text(
        f'[aws]\nregion = "us-east-1"\nendpoint_url = "{aws_url}"\n{aws}'
        f'[ecs]\nclusters = ["{cluster}"]\n'
        f'[dns]\nzone = "{zone}"\nlisten = ["127.0.0.1:{dns_port}"]\n'
        f'[http]\nlisten = "127.0.0.1:{http_port}"\ndrain_s = 0\n'
        f'[snapshot]\npath = "{directory / "snapshot.json"}"\n'
        "[health]\nmax_staleness_s = 600\n" + extra
    )
    return path

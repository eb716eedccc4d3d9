"""Scale benchmark: the daemon (a real process, default AWS budget) against estates of 1,000, 5,000
and 10,000 tasks in the fake AWS. Per estate: cold start to a complete snapshot (AWS calls and
client-side token wait by operation), steady-state poll duration and calls per poll, RSS, the
time a one-task change takes to reach DNS and its render time and the worst DNS answer time
meanwhile (the event loop's stall, as clients see it), and a warm restart from the snapshot file.

    .venv/bin/python bench/scale/run.py [--tasks 1000 5000 10000] [--polls 3]
"""

from __future__ import annotations

import argparse
import json
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parent)]

from common import DaemonProcess, calls_by_operation, daemon_config, free_port, metrics  # noqa: E402
from estate import CLUSTER, seed  # noqa: E402

from discobridge.fakeaws.estate import Container, Estate  # noqa: E402
from discobridge.fakeaws.server import FakeAws  # noqa: E402

ZONE = "scale.test"
# The default budget: a quarter of ECS's cluster-resource bucket (20/s) for ListTasks,
# DescribeTasks and ListContainerInstances.
CLUSTER_RESOURCE_PER_S = 20 * 0.25


def stalls(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    """Loop-lag observations between two samples, by histogram bucket ("le" bound: count)."""
    out = {}
    for name, value in after.items():
        if name.startswith("discobridge_event_loop_lag_seconds_bucket{"):
            bound = name.split('le="', 1)[1].split('"', 1)[0]
            out[bound] = value - before.get(name, 0.0)
    return out


def token_wait(sample: dict[str, float]) -> dict[str, float]:
    return {
        name.split('bucket="', 1)[1].split('"', 1)[0]: value
        for name, value in sample.items()
        if name.startswith("discobridge_aws_token_wait_seconds_total{")
    }


class Prober:
    """probe.py as a process of its own, asking for one SRV name every 2 ms."""

    def __init__(self, port: int, name: str) -> None:
        self._process = subprocess.Popen(
            [sys.executable, str(HERE / "probe.py"), str(port), name], stdout=subprocess.PIPE, text=True
        )
        assert self._process.stdout is not None
        self._process.stdout.readline()  # "ready"

    def stop(self) -> list[tuple[float, float, frozenset[int]]]:
        self._process.send_signal(signal.SIGTERM)
        out, _ = self._process.communicate(timeout=30)
        samples = json.loads(out)
        if not any(ports for _, _, ports, _ in samples):
            rcodes = sorted({rcode for *_, rcode in samples})
            raise RuntimeError(f"no SRV answer held a port in {len(samples)} queries: rcodes {rcodes}")
        return [(sent, seconds, frozenset(ports)) for sent, seconds, ports, _ in samples]


def write_config(directory: Path, aws_url: str, dns_port: int, http_port: int) -> Path:
    return daemon_config(directory, aws_url, dns_port, http_port, zone=ZONE, cluster=CLUSTER)


def measure(tasks: int, polls: int) -> dict[str, Any]:
    aws = FakeAws().start()
    estate = Estate(aws.url)
    started = time.monotonic()
    hosts, first_service = seed(estate, tasks)
    result: dict[str, Any] = {"tasks": tasks, "services": tasks // 10, "seeded_s": time.monotonic() - started}
    aws.faults.calls.clear()
    dns_port, http_port = free_port(), free_port()
    with tempfile.TemporaryDirectory() as tmp:
        config = write_config(Path(tmp), aws.url, dns_port, http_port)
        daemon = DaemonProcess(config)
        result |= cold_and_steady(daemon, http_port, polls)
        result |= one_task_replaced(daemon, estate, hosts, first_service[0], dns_port, http_port)
        daemon.wait("snapshot_saved", timeout=60)
        daemon.stop()
        aws.faults.calls.clear()
        result |= warm_restart(config, aws, http_port)
    aws.stop()
    return result


def cold_and_steady(daemon: DaemonProcess, http_port: int, polls: int) -> dict[str, Any]:
    """The first complete snapshot, then `polls` steady polls."""
    at, _ = daemon.wait("snapshot_first_published", timeout=3600)
    cold = metrics(http_port)
    daemon.wait("source_refreshed", timeout=600)  # the cold poll itself
    durations, before = [], metrics(http_port)
    for _ in range(polls):
        _, event = daemon.wait("source_refreshed", timeout=600)
        durations.append(event["duration_s"])
    after = calls_by_operation(metrics(http_port))
    per_poll = {op: (n - calls_by_operation(before).get(op, 0)) / polls for op, n in after.items()}
    return {
        "cold_s": at - daemon.started,
        "cold_calls": calls_by_operation(cold),
        "cold_token_wait_s": token_wait(cold),
        "poll_s": durations,
        "calls_per_poll": {op: n for op, n in per_poll.items() if n},
        "rss_mb": daemon.rss_mb(),
    }


def one_task_replaced(
    daemon: DaemonProcess, estate: Estate, hosts: list[str], task_arn: str, dns_port: int, http_port: int
) -> dict[str, Any]:
    """One task of svc-0000 stops and another starts: when DNS shows it, what it cost to render."""
    prober = Prober(dns_port, f"_svc-0000._tcp.{ZONE}")
    time.sleep(0.5)
    lag_before = metrics(http_port)
    changed_at = time.monotonic()
    estate.stop(CLUSTER, task_arn)
    definition = estate.task_definition("svc-0000", Container("web", ports=(8080,)))
    estate.place(CLUSTER, definition, hosts[-1:], group="service:svc-0000")
    _, published = daemon.wait("snapshot_published", timeout=600)
    time.sleep(1.0)
    samples = prober.stop()
    old_ports = next(s[2] for s in samples if s[2])
    visible = next((s for s in samples if s[0] >= changed_at and s[2] and s[2] != old_ports), None)
    window = sorted(s[1] for s in samples if s[0] >= changed_at)
    lag = stalls(lag_before, metrics(http_port))
    total = lag.get("+Inf", 0.0)
    return {
        "change_visible_s": (visible[0] + visible[1] - changed_at) if visible else None,
        "change_render_s": published["duration_s"],
        "dns_worst_ms_during_change": window[-1] * 1000 if window else None,
        "dns_p99_ms_during_change": window[int(len(window) * 0.99)] * 1000 if window else None,
        "loop_lag_over_20ms_during_change": total - lag.get("0.02", total),
        "loop_lag_buckets_during_change": lag,
        "peak_rss_mb": daemon.peak_rss_mb,
    }


def warm_restart(config: Path, aws: FakeAws, http_port: int) -> dict[str, Any]:
    """A restart from the snapshot file: when it answers with the whole estate, and what its
    first poll costs."""
    warm = DaemonProcess(config)
    at, _ = warm.wait("http_listening", timeout=600)
    with urllib.request.urlopen(f"http://127.0.0.1:{http_port}/v1/services", timeout=10) as response:
        services = len(json.loads(response.read())["services"])
    warm.wait("source_refreshed", timeout=600)
    found = {
        "warm_answering_s": at - warm.started,
        "warm_services": services,
        "warm_describe_task_definition_calls": aws.faults.calls.get("DescribeTaskDefinition", 0),
        "warm_first_poll_calls": dict(aws.faults.calls),
    }
    warm.stop()
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, nargs="+", default=[1000, 5000, 10000])
    parser.add_argument("--polls", type=int, default=3)
    args = parser.parse_args()
    for tasks in args.tasks:
        found = measure(tasks, args.polls)
        print(json.dumps(found), flush=True)
        calls = found["calls_per_poll"]
        resource = sum(calls.get(op, 0) for op in ("ListTasks", "DescribeTasks", "ListContainerInstances"))
        print(
            f"{tasks:>6} tasks: cold {found['cold_s']:.0f} s, warm {found['warm_answering_s']:.1f} s "
            f"({found['warm_services']} services, "
            f"{found['warm_describe_task_definition_calls']} DescribeTaskDefinition), "
            f"poll {max(found['poll_s']):.1f} s and {resource:.1f} cluster-resource calls "
            f"({resource / CLUSTER_RESOURCE_PER_S:.1f} s of budget per 10 s poll), RSS {found['rss_mb']:.0f} MB "
            f"(peak {found['peak_rss_mb']:.0f}), change in DNS after {found['change_visible_s']:.1f} s, "
            f"rendered in {found['change_render_s'] * 1000:.0f} ms, worst DNS answer meanwhile "
            f"{found['dns_worst_ms_during_change']:.1f} ms",
            flush=True,
        )


if __name__ == "__main__":
    socket.setdefaulttimeout(30)
    main()

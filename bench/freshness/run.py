"""Freshness benchmark: how long a task start or stop takes to show in DNS, /v1 and /eureka/apps,
with ECS events on and with polling only, and what a quiet large estate costs in AWS calls.

1. In an estate of 1,000 tasks (one cluster, 100 services), `--changes` task stops and as many
   starts, one every `--every` seconds, each timed from the ECS call's return (when the fake
   EventBridge has put its event in the queue) to the moment each view agrees, as seen by
   probe.py in a process of its own. The daemon runs as its own process at the default budget
   and `poll_interval_s = 10`; with events on, `reconcile_s = 300`.
2. In a quiet estate of 10,000 tasks: AWS calls per minute over `--window` seconds of steady
   state, events on and off. A reconcile (the full poll that events leave every 300 s) rarely
   falls inside the window: its calls are measured on its own (the full poll right after the
   subscription) and added pro rata.

    .venv/bin/python bench/freshness/run.py [--changes 100] [--quiet-tasks 10000] [--window 120]
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE.parent), str(HERE.parent / "scale")]

from common import DaemonProcess, calls_by_operation, daemon_config, free_port, metrics  # noqa: E402
from estate import CLUSTER, seed  # noqa: E402

from discobridge.fakeaws.estate import Estate  # noqa: E402
from discobridge.fakeaws.server import FakeAws  # noqa: E402

ZONE = "fresh.test"
RECONCILE_S = 300.0


def write_config(directory: Path, aws_url: str, dns_port: int, http_port: int, topic: str | None, **extra: str) -> Path:
    events = f'[events]\ntopic_arn = "{topic}"\n' if topic else ""
    return daemon_config(
        directory, aws_url, dns_port, http_port, zone=ZONE, cluster=CLUSTER, aws=extra.get("aws", ""), extra=events
    )


class Probe:
    def __init__(self, dns_port: int, http_port: int) -> None:
        self._process = subprocess.Popen(
            [sys.executable, str(HERE / "probe.py"), str(dns_port), str(http_port), ZONE],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self._process.stdout is not None and self._process.stdin is not None
        self._process.stdout.readline()  # "ready"

    def watch(self, watch_id: str, service: str, address: str, present: bool) -> None:
        assert self._process.stdin is not None
        line = {"id": watch_id, "service": service, "address": address, "present": present}
        self._process.stdin.write(json.dumps(line) + "\n")
        self._process.stdin.flush()

    def results(self, count: int) -> dict[str, dict[str, float]]:
        assert self._process.stdout is not None and self._process.stdin is not None
        self._process.stdin.close()
        found = {}
        for _ in range(count):
            result = json.loads(self._process.stdout.readline())
            found[result["id"]] = result["seen"]
        self._process.wait(timeout=30)
        return found


def addresses(estate: Estate, tasks: list[dict[str, Any]], host_ips: dict[str, str]) -> dict[str, str]:
    """task ARN -> "ip:port" as discobridge serves it (bridge mode: the host's IP, the host port)."""
    return {
        t["taskArn"]: f"{host_ips[t['containerInstanceArn']]}:{t['containers'][0]['networkBindings'][0]['hostPort']}"
        for t in tasks
    }


def host_ips(estate: Estate, hosts: list[str]) -> dict[str, str]:
    ips: dict[str, str] = {}
    for start in range(0, len(hosts), 100):
        described = estate.ecs.describe_container_instances(
            cluster=CLUSTER, containerInstances=hosts[start : start + 100]
        )
        by_ec2 = {c["ec2InstanceId"]: c["containerInstanceArn"] for c in described["containerInstances"]}
        for reservation in estate.ec2.describe_instances(InstanceIds=list(by_ec2))["Reservations"]:
            for instance in reservation["Instances"]:
                ips[by_ec2[instance["InstanceId"]]] = instance["PrivateIpAddress"]
    return ips


def tasks_by_service(estate: Estate) -> dict[str, list[dict[str, Any]]]:
    """Every running task, described, by service name."""
    arns = [a for page in estate.ecs.get_paginator("list_tasks").paginate(cluster=CLUSTER) for a in page["taskArns"]]
    found: dict[str, list[dict[str, Any]]] = {}
    for start in range(0, len(arns), 100):
        for task in estate.ecs.describe_tasks(cluster=CLUSTER, tasks=arns[start : start + 100])["tasks"]:
            found.setdefault(task["group"].removeprefix("service:"), []).append(task)
    return found


def changes(estate: Estate, hosts: list[str], count: int, every_s: float, dns_port: int, http_port: int) -> dict:
    """`count` stops and `count` starts, alternating, each of a random service's task."""
    ips = host_ips(estate, hosts)
    running = tasks_by_service(estate)  # only seeded tasks are stopped: never one started here
    rng = random.Random(7)
    probe = Probe(dns_port, http_port)
    done_at: dict[str, float] = {}
    kinds: dict[str, str] = {}
    for n in range(2 * count):
        service = f"svc-{rng.randrange(100):04d}"
        if n % 2 == 0:  # stop one of its tasks
            task = running[service].pop(rng.randrange(len(running[service])))
            address = addresses(estate, [task], ips)[task["taskArn"]]
            estate.stop(CLUSTER, task["taskArn"])
            present = False
        else:  # start one more
            definition = estate.ecs.describe_services(cluster=CLUSTER, services=[service])["services"][0][
                "taskDefinition"
            ]
            arn = estate.place(CLUSTER, definition, [rng.choice(hosts)], group=f"service:{service}")[0]
            tasks = estate.ecs.describe_tasks(cluster=CLUSTER, tasks=[arn])["tasks"]
            address = addresses(estate, tasks, ips)[arn]
            present = True
        watch_id = str(n)
        done_at[watch_id], kinds[watch_id] = time.monotonic(), "start" if present else "stop"
        probe.watch(watch_id, service, address, present)
        time.sleep(every_s)
    seen = probe.results(2 * count)
    out: dict[str, Any] = {}
    for view in ("dns", "v1", "eureka"):
        for kind in ("stop", "start"):
            delays = sorted(seen[i][view] - done_at[i] for i in seen if kinds[i] == kind and view in seen[i])
            out[f"{view} {kind}"] = _percentiles(delays)
            missed = sum(1 for i in seen if kinds[i] == kind and view not in seen[i])
            if missed:
                out[f"{view} {kind}"]["never_seen"] = missed
    return out


def _percentiles(values: list[float]) -> dict[str, float]:
    if not values:
        return {}
    cut = statistics.quantiles(values, n=100, method="inclusive") if len(values) > 1 else values * 99
    return {
        "p50_ms": round(cut[49] * 1000, 1),
        "p99_ms": round(cut[98] * 1000, 1),
        "max_ms": round(values[-1] * 1000, 1),
    }


def freshness(count: int, every_on: float, every_off: float) -> dict[str, Any]:
    results: dict[str, Any] = {}
    aws = FakeAws().start()
    try:
        estate = Estate(aws.url)
        topic = estate.events_topic()
        hosts, _ = seed(estate, 1000)
        for mode, every_s in (("events", every_on), ("polling", every_off)):
            with tempfile.TemporaryDirectory() as tmp:
                dns_port, http_port = free_port(), free_port()
                config = write_config(Path(tmp), aws.url, dns_port, http_port, topic if mode == "events" else None)
                daemon = DaemonProcess(config)
                try:
                    if mode == "events":  # the queue is up long before the first poll of 1,000 tasks
                        daemon.wait("events_flowing", timeout=60)
                    daemon.wait("snapshot_first_published", timeout=600)
                    daemon.wait("source_refreshed", timeout=600)  # that first poll
                    if mode == "events":
                        daemon.wait("source_refreshed", timeout=600)  # the full poll after subscribing
                    results[mode] = changes(estate, hosts, count, every_s, dns_port, http_port)
                finally:
                    daemon.stop()
                print(mode, json.dumps(results[mode]), flush=True)
    finally:
        aws.stop()
    return results


def quiet_cost(tasks: int, window_s: float) -> dict[str, Any]:
    """AWS calls per minute of a quiet estate, polling only and events on."""
    results: dict[str, Any] = {}
    aws = FakeAws().start()
    try:
        estate = Estate(aws.url)
        topic = estate.events_topic()
        seed(estate, tasks)
        with tempfile.TemporaryDirectory() as tmp:
            directory = Path(tmp)
            # Warm the task-definition cache once, at the whole budget: both runs then start as a
            # restarted replica does, from the snapshot file.
            dns_port, http_port = free_port(), free_port()
            warm = DaemonProcess(
                write_config(directory, aws.url, dns_port, http_port, None, aws="api_rate_fraction = 1.0\n")
            )
            warm.wait("snapshot_saved", timeout=1800)
            warm.stop()
            for mode in ("polling", "events"):
                dns_port, http_port = free_port(), free_port()
                config = write_config(directory, aws.url, dns_port, http_port, topic if mode == "events" else None)
                daemon = DaemonProcess(config)
                try:
                    # Restored from the snapshot file, then a first poll that describes every task.
                    daemon.wait("source_refreshed", timeout=900)
                    reconcile: dict[str, float] = {}
                    if mode == "events":  # then the full poll after subscribing: one reconcile
                        before = calls_by_operation(metrics(http_port))
                        daemon.wait("source_refreshed", timeout=600, where=lambda e: e.get("duration_s", 0) > 1)
                        after = calls_by_operation(metrics(http_port))
                        reconcile = {op: after[op] - before.get(op, 0) for op in after if after[op] > before.get(op, 0)}
                    before = calls_by_operation(metrics(http_port))
                    time.sleep(window_s)  # the quiet estate itself is what is measured
                    after = calls_by_operation(metrics(http_port))
                finally:
                    daemon.stop()
                per_minute = {op: round((after[op] - before.get(op, 0)) * 60 / window_s, 1) for op in after}
                per_minute = {op: n for op, n in per_minute.items() if n}
                if reconcile:
                    for op, n in reconcile.items():
                        per_minute[op] = round(per_minute.get(op, 0) + n * 60 / RECONCILE_S, 1)
                results[mode] = {
                    "calls_per_minute": round(sum(per_minute.values()), 1),
                    "by_operation": per_minute,
                    "one_reconcile": reconcile,
                }
                print(mode, json.dumps(results[mode]), flush=True)
    finally:
        aws.stop()
    results["ratio"] = round(results["events"]["calls_per_minute"] / results["polling"]["calls_per_minute"], 3)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--changes", type=int, default=100, help="stops, and as many starts")
    parser.add_argument("--quiet-tasks", type=int, default=10000)
    parser.add_argument("--window", type=float, default=120.0, help="seconds of quiet estate measured")
    parser.add_argument("--skip", choices=("freshness", "quiet"), default=None)
    args = parser.parse_args()
    out: dict[str, Any] = {}
    if args.skip != "freshness":
        out["freshness"] = freshness(args.changes, every_on=0.2, every_off=0.5)
    if args.skip != "quiet":
        out["quiet"] = quiet_cost(args.quiet_tasks, args.window)
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()

"""Snapshot build benchmark: what a change costs, and how long it holds up the event loop.

5,000 endpoints (500 services x 10). Measures the first build (every service rendered), a build
after one task changed (the reference: the same estate, the same run), and the longest event-loop
stall while a changed snapshot is built, inline (publish) and in a worker thread
(submit, what the daemon does).

    .venv/bin/python bench/snapshot/run.py [--services 500] [--per-service 10] [--runs 5]
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from common import BENCH_PARTITION, serving_store

from discobridge.model import Endpoint, Health, PartitionResult
from discobridge.store import SnapshotStore


def estate(services: int, per_service: int) -> tuple[Endpoint, ...]:
    return tuple(
        Endpoint(
            f"svc-{s}", f"10.{s // 250}.{s % 250}.{e + 1}", 32768 + e, Health.HEALTHY, "us-east-1a", "ecs",
            cluster="prod", task_arn=f"arn:aws:ecs:us-east-1:1:task/prod/{s * per_service + e:032x}",
            account="local", region="us-east-1",
        )
        for s in range(services)
        for e in range(per_service)
    )  # fmt: skip


async def longest_stall(work: asyncio.Future[object] | object) -> float:
    """The longest gap between 1 ms ticks of the event loop while `work` runs."""
    gaps: list[float] = []
    done = asyncio.Event()

    async def ticker() -> None:
        last = time.perf_counter()
        while not done.is_set():
            await asyncio.sleep(0.001)
            now = time.perf_counter()
            gaps.append(now - last)
            last = now

    task = asyncio.create_task(ticker())
    await asyncio.sleep(0.01)
    if asyncio.iscoroutine(work):
        await work
    done.set()
    await task
    return max(gaps)


def _changed(endpoints: tuple[Endpoint, ...], port: int) -> PartitionResult:
    return PartitionResult((dataclasses.replace(endpoints[0], host_port=port), *endpoints[1:]), 0.0)


async def _inline(store: SnapshotStore, endpoints: tuple[Endpoint, ...], port: int) -> None:
    store.publish(BENCH_PARTITION, _changed(endpoints, port))


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--services", type=int, default=500)
    parser.add_argument("--per-service", type=int, default=10)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    endpoints = estate(args.services, args.per_service)
    cold, warm, inline, threaded = [], [], [], []
    for run in range(args.runs):
        started = time.perf_counter()
        store = serving_store(endpoints, zone="b.test")
        cold.append(time.perf_counter() - started)
        started = time.perf_counter()
        store.publish(BENCH_PARTITION, _changed(endpoints, 1000 + run))
        warm.append(time.perf_counter() - started)

        inline.append(await longest_stall(_inline(store, endpoints, 2000 + run)))
        threaded.append(await longest_stall(store.submit(BENCH_PARTITION, _changed(endpoints, 3000 + run))))
    ms = lambda xs: statistics.median(xs) * 1000  # noqa: E731
    print(f"{len(endpoints):,} endpoints, medians of {args.runs} runs")
    print(f"first build (every service rendered): {ms(cold):7.1f} ms")
    print(f"build after one task changed:         {ms(warm):7.1f} ms  ({ms(warm) / ms(cold):.2f} x the first)")
    print(f"longest event-loop stall, inline:     {ms(inline):7.1f} ms")
    print(f"longest event-loop stall, in thread:  {ms(threaded):7.1f} ms  ({ms(threaded) / ms(inline):.2f} x inline)")


if __name__ == "__main__":
    asyncio.run(main())

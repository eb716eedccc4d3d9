"""DNS benchmark: discobridge against Knot on the same records, same machine, same run.

Each server is pinned to core 0 and dnsperf to core 1 (taskset). Reports queries/s, p50/p99
latency and the server's CPU time per query (utime+stime over queries answered), which stays
stable from run to run on a shared machine where queries/s does not.

    .venv/bin/python bench/dns/run.py [--seconds 10] [--runs 3]

Needs Debian's knot, dnsperf and util-linux (taskset) and discobridge installed with uvloop.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import dns.message
import dns.query

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parent)]

from common import cpu_seconds, free_port  # noqa: E402
from estate import ZONE, queries, zone_file  # noqa: E402

PER_CONNECTION = 0


@dataclass
class Result:
    server: str
    mode: str
    qps: float
    p50_ms: float
    p99_ms: float
    cpu_us: float
    completed: int
    lost: int


def wait_until_answering(port: int, process: subprocess.Popen[bytes], deadline_s: float = 30) -> None:
    query = dns.message.make_query(f"svc-1.{ZONE}", "A")
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited with {process.returncode}")
        try:
            reply = dns.query.udp(query, "127.0.0.1", port=port, timeout=0.2)
        except dns.exception.Timeout:
            continue
        if reply.answer:
            return
    raise RuntimeError("server never answered")


def start_knot(work: Path, port: int) -> subprocess.Popen[bytes]:
    (work / f"{ZONE}.zone").write_text(zone_file())
    (work / "knot.conf").write_text(
        f"""server:
    listen: 127.0.0.1@{port}
    udp-workers: 1
    tcp-workers: 1
    background-workers: 1
    rundir: {work}
database:
    storage: {work}
log:
  - target: stderr
    any: warning
zone:
  - domain: {ZONE}
    storage: {work}
    file: {ZONE}.zone
"""
    )
    return subprocess.Popen(["taskset", "-c", "0", "knotd", "-c", str(work / "knot.conf")])


def start_discobridge(work: Path, port: int) -> subprocess.Popen[bytes]:
    return subprocess.Popen(["taskset", "-c", "0", sys.executable, str(HERE / "server.py"), str(port)])


def run_dnsperf(work: Path, port: int, mode: str, seconds: float) -> tuple[int, int, float, list[float]]:
    (work / "queries.txt").write_text("\n".join(queries()) + "\n")
    command = [
        "taskset",
        "-c",
        "1",
        "dnsperf",
        "-s",
        "127.0.0.1",
        "-p",
        str(port),
        "-d",
        str(work / "queries.txt"),
        "-l",
        str(seconds),
        "-m",
        mode,
        "-v",
    ]
    if mode == "tcp" and PER_CONNECTION:
        command += ["-O", f"num-queries-per-conn={PER_CONNECTION}"]
    out = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    latencies, completed, lost, qps = [], 0, 0, 0.0
    for line in out.splitlines():
        parts = line.split()
        if line.startswith("> ") and len(parts) >= 5:
            latencies.append(float(parts[-1]))
        elif "Queries completed:" in line:
            completed = int(parts[2])
        elif "Queries lost:" in line:
            lost = int(parts[2])
        elif "Queries per second:" in line:
            qps = float(parts[3])
    return completed, lost, qps, latencies


def measure(name: str, start: object, mode: str, seconds: float) -> Result:
    with tempfile.TemporaryDirectory() as tmp:
        work, port = Path(tmp), free_port()
        process = start(work, port)  # type: ignore[operator]
        try:
            wait_until_answering(port, process)
            before = cpu_seconds(process.pid)
            completed, lost, qps, latencies = run_dnsperf(work, port, mode, seconds)
            used = cpu_seconds(process.pid) - before
        finally:
            process.terminate()
            process.wait(timeout=30)
    cuts = statistics.quantiles(latencies, n=100) if len(latencies) > 100 else [0.0] * 99
    return Result(name, mode, qps, cuts[49] * 1000, cuts[98] * 1000, used / max(completed, 1) * 1e6, completed, lost)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--runs", type=int, default=3, help="runs per server and mode; medians are reported")
    parser.add_argument("--modes", default="udp,tcp", help="transports to measure (default: udp,tcp)")
    parser.add_argument("--tcp-queries-per-connection", type=int, default=0, help="0: dnsperf's default")
    args = parser.parse_args()
    global PER_CONNECTION  # noqa: PLW0603 - set once from the command line
    PER_CONNECTION = args.tcp_queries_per_connection
    missing = [tool for tool in ("knotd", "dnsperf", "taskset") if shutil.which(tool) is None]
    if missing:
        print(f"missing: {', '.join(missing)} (apt-get install knot dnsperf util-linux)", file=sys.stderr)
        return 1
    servers = [("knot", start_knot), ("discobridge", start_discobridge)]
    rows: dict[tuple[str, str], list[Result]] = {}
    for _ in range(args.runs):
        for mode in args.modes.split(","):
            for name, start in servers:  # interleaved, so drift on a shared machine hits both
                rows.setdefault((name, mode), []).append(measure(name, start, mode, args.seconds))
    medians = {key: _median(results) for key, results in rows.items()}
    print(f"{'server':<12} {'mode':<4} {'queries/s':>10} {'p50 ms':>7} {'p99 ms':>7} {'CPU µs/query':>13} {'lost':>6}")
    for (name, mode), r in medians.items():
        print(f"{name:<12} {mode:<4} {r.qps:>10.0f} {r.p50_ms:>7.2f} {r.p99_ms:>7.2f} {r.cpu_us:>13.2f} {r.lost:>6}")
    for mode in args.modes.split(","):
        knot, ours = medians[("knot", mode)], medians[("discobridge", mode)]
        print(
            f"{mode}: Knot CPU/query ÷ discobridge CPU/query = {knot.cpu_us / ours.cpu_us:.2f}; "
            f"discobridge queries/s ÷ Knot = {ours.qps / knot.qps:.2f}"
        )
    if ("discobridge", "tcp") in medians and ("discobridge", "udp") in medians:
        udp, tcp = medians[("discobridge", "udp")], medians[("discobridge", "tcp")]
        print(f"discobridge: TCP queries/s ÷ UDP queries/s = {tcp.qps / udp.qps:.2f}")
    return 0


def _median(results: list[Result]) -> Result:
    def med(attr: str) -> float:
        return float(statistics.median(getattr(r, attr) for r in results))

    first = results[0]
    return Result(
        first.server,
        first.mode,
        med("qps"),
        med("p50_ms"),
        med("p99_ms"),
        med("cpu_us"),
        int(med("completed")),
        int(med("lost")),
    )


if __name__ == "__main__":
    raise SystemExit(main())

"""Eureka benchmark: discobridge's /eureka/apps/ against nginx serving the same bytes.

1,000 instances (about 200 KB of JSON). Each server pinned to core 0, wrk (1 thread, 32
connections) to core 1; plain JSON, gzip, and 304 on a matching ETag. Prints requests/s and the
server's CPU time per request, and the ratios discobridge ÷ nginx, medians of --runs.

    .venv/bin/python bench/eureka/run.py [--seconds 10] [--runs 3]

Needs Debian's nginx and wrk.
"""

from __future__ import annotations

import argparse
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parent)]

from common import cpu_seconds, free_port  # noqa: E402
from estate import store  # noqa: E402

from discobridge.render.eureka import EUREKA  # noqa: E402

MODES = {
    "plain": {"Accept": "application/json"},
    "gzip": {"Accept": "application/json", "Accept-Encoding": "gzip"},
    "304": {"Accept": "application/json"},  # plus If-None-Match with the server's own ETag
}


def wait_until_serving(port: int, deadline_s: float = 30) -> None:
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/eureka/apps/", timeout=1) as response:
                response.read()
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError("server never answered")


def start_nginx(work: Path, port: int) -> tuple[subprocess.Popen[bytes], list[int]]:
    docs = store().current.view(EUREKA).apps  # type: ignore[union-attr]
    (work / "apps").mkdir()
    (work / "apps" / "index.json").write_bytes(docs.json)
    (work / "apps" / "index.json.gz").write_bytes(docs.json_gzip)
    (work / "nginx.conf").write_text(
        f"""daemon off; worker_processes 1; pid {work}/nginx.pid; error_log {work}/error.log;
events {{ worker_connections 1024; }}
http {{
  access_log off; sendfile on; tcp_nopush on; keepalive_requests 1000000;
  client_body_temp_path {work}; proxy_temp_path {work}; fastcgi_temp_path {work};
  uwsgi_temp_path {work}; scgi_temp_path {work};
  server {{
    listen 127.0.0.1:{port};
    location /eureka/apps/ {{ alias {work}/apps/; index index.json; default_type application/json;
                              gzip_static on; etag on; }}
  }}
}}
"""
    )
    process = subprocess.Popen(["taskset", "-c", "0", "nginx", "-c", str(work / "nginx.conf")])
    wait_until_serving(port)
    children = subprocess.run(["pgrep", "-P", str(process.pid)], capture_output=True, text=True, check=False)
    return process, [process.pid, *(int(p) for p in children.stdout.split())]


def start_discobridge(work: Path, port: int) -> tuple[subprocess.Popen[bytes], list[int]]:
    process = subprocess.Popen(["taskset", "-c", "0", sys.executable, str(HERE / "server.py"), str(port)])
    wait_until_serving(port)
    return process, [process.pid]


def etag(port: int) -> str:
    request = urllib.request.Request(f"http://127.0.0.1:{port}/eureka/apps/", headers=MODES["plain"])
    with urllib.request.urlopen(request, timeout=5) as response:  # noqa: S310
        return str(response.headers["ETag"])


def wrk(port: int, headers: dict[str, str], seconds: float) -> float:
    command = ["taskset", "-c", "1", "wrk", "-t1", "-c32", f"-d{int(seconds)}s"]
    for key, value in headers.items():
        command += ["-H", f"{key}: {value}"]
    out = subprocess.run(
        [*command, f"http://127.0.0.1:{port}/eureka/apps/"], capture_output=True, text=True, check=True
    )
    match = re.search(r"Requests/sec:\s+([\d.]+)", out.stdout)
    if match is None or ("Non-2xx" in out.stdout and "304" not in str(headers)):
        raise RuntimeError(out.stdout)
    return float(match.group(1))


def measure(start: object, mode: str, seconds: float) -> tuple[float, float]:
    with tempfile.TemporaryDirectory() as tmp:
        port = free_port()
        process, pids = start(Path(tmp), port)  # type: ignore[operator]
        try:
            headers = dict(MODES[mode])
            if mode == "304":
                headers["If-None-Match"] = etag(port)
            before = cpu_seconds(*pids)
            rate = wrk(port, headers, seconds)
            used = cpu_seconds(*pids) - before
        finally:
            process.terminate()
            process.wait(timeout=30)
    return rate, used / (rate * seconds) * 1e6


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    missing = [tool for tool in ("nginx", "wrk", "taskset") if shutil.which(tool) is None]
    if missing:
        print(f"missing: {', '.join(missing)} (apt-get install nginx wrk)", file=sys.stderr)
        return 1
    docs = store().current.view(EUREKA).apps  # type: ignore[union-attr]
    print(f"registry: 1,000 instances, {len(docs.json):,} bytes JSON, {len(docs.json_gzip):,} bytes gzip")
    servers = {"nginx": start_nginx, "discobridge": start_discobridge}
    results: dict[tuple[str, str], list[tuple[float, float]]] = {}
    for _ in range(args.runs):
        for mode in MODES:
            for name, start in servers.items():  # interleaved: drift hits both alike
                results.setdefault((name, mode), []).append(measure(start, mode, args.seconds))
    print(f"{'server':<12} {'mode':<6} {'requests/s':>11} {'CPU µs/request':>15}")
    medians = {}
    for (name, mode), runs in results.items():
        rate = statistics.median(r for r, _ in runs)
        cpu = statistics.median(c for _, c in runs)
        medians[(name, mode)] = (rate, cpu)
        print(f"{name:<12} {mode:<6} {rate:>11.0f} {cpu:>15.1f}")
    for mode in MODES:
        ours, theirs = medians[("discobridge", mode)], medians[("nginx", mode)]
        print(f"{mode}: discobridge requests/s ÷ nginx = {ours[0] / theirs[0]:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Under attacks 1-4 of issue 12 at once (attack.py, its own process), how fast the daemon still
answers DNS over UDP and /healthz, against the same measurement without the attacks, in one run.

    .venv/bin/python bench/attacks/run.py [--seconds 20]

The daemon runs as a process against the fake AWS (one small estate); a client process asks
DNS over UDP every 10 ms and /healthz every 50 ms and reports p50/p99/max of each.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parent), str(HERE.parent.parent)]

from common import free_port  # noqa: E402

from discobridge.fakeaws.estate import Estate  # noqa: E402
from discobridge.fakeaws.server import FakeAws  # noqa: E402

PROBE = """
import json, sys, time, urllib.request
import dns.message, dns.query
dns_port, http, seconds = int(sys.argv[1]), sys.argv[2], float(sys.argv[3])
query = dns.message.make_query("orders.discobridge.internal", "A")
udp, health, lost = [], [], 0
end = time.monotonic() + seconds
next_health = 0.0
while time.monotonic() < end:
    started = time.monotonic()
    try:
        dns.query.udp(query, "127.0.0.1", port=dns_port, timeout=1)
        udp.append(time.monotonic() - started)
    except Exception:
        lost += 1
        udp.append(1.0)
    if started >= next_health:
        next_health = started + 0.05
        t = time.monotonic()
        try:
            with urllib.request.urlopen(http + "/healthz", timeout=5) as response:
                response.read()
            health.append(time.monotonic() - t)
        except Exception:
            health.append(5.0)
    time.sleep(0.01)
print(json.dumps({"udp": udp, "healthz": health, "lost": lost}))
"""


def percentiles(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    return {
        "p50_ms": statistics.median(ordered) * 1000,
        "p99_ms": ordered[int(len(ordered) * 0.99) - 1] * 1000,
        "max_ms": ordered[-1] * 1000,
        "n": len(ordered),
    }


def probe(dns_port: int, http: str, seconds: float) -> dict[str, Any]:
    out = subprocess.run(
        [sys.executable, "-c", PROBE, str(dns_port), http, str(seconds)],
        capture_output=True,
        text=True,
        check=True,
        timeout=seconds + 60,
    ).stdout
    found = json.loads(out)
    return {"udp": percentiles(found["udp"]), "healthz": percentiles(found["healthz"]), "lost": found["lost"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=20.0)
    args = parser.parse_args()
    aws = FakeAws().start()
    Estate(aws.url).web_service("prod", "orders", hosts=4)
    dns_port, http_port = free_port(), free_port()
    with tempfile.TemporaryDirectory() as tmp:
        config = Path(tmp) / "config.toml"
        config.write_text(
            f'[aws]\nregion = "us-east-1"\nendpoint_url = "{aws.url}"\n[ecs]\npoll_interval_s = 1\n'
            f'[dns]\nzone = "discobridge.internal"\nlisten = ["127.0.0.1:{dns_port}"]\n'
            f'[http]\nlisten = "127.0.0.1:{http_port}"\ndrain_s = 0\n'
        )
        env = {**os.environ, "AWS_EC2_METADATA_DISABLED": "true"}
        daemon = subprocess.Popen([sys.executable, "-m", "discobridge", "run", "-c", str(config)], env=env,
                                  stderr=subprocess.DEVNULL)  # fmt: skip
        http = f"http://127.0.0.1:{http_port}"
        for _ in range(100):
            try:
                with urllib.request.urlopen(http + "/healthz", timeout=1) as response:  # noqa: S310
                    if response.status == 200:
                        break
            except OSError:
                time.sleep(0.2)
        calm = probe(dns_port, http, args.seconds)
        attacker = subprocess.Popen(
            [sys.executable, str(HERE / "attack.py"), str(dns_port), "127.0.0.1", str(http_port)],
            stdout=subprocess.PIPE, text=True,
        )  # fmt: skip
        assert attacker.stdout is not None
        attacker.stdout.readline()
        time.sleep(2)  # the attacks take hold
        attacked = probe(dns_port, http, args.seconds)
        attacker.send_signal(signal.SIGTERM)
        attacker.wait(timeout=60)
        daemon.send_signal(signal.SIGTERM)
        daemon.wait(timeout=30)
    aws.stop()
    print(json.dumps({"calm": calm, "attacked": attacked}))
    for name, found in (("no attack", calm), ("attacks 1-4", attacked)):
        udp, health = found["udp"], found["healthz"]
        print(
            f"{name:>12}: DNS/UDP p50 {udp['p50_ms']:.2f} ms p99 {udp['p99_ms']:.2f} ms max {udp['max_ms']:.1f} ms "
            f"({udp['n']} queries, {found['lost']} lost); /healthz p50 {health['p50_ms']:.1f} ms "
            f"p99 {health['p99_ms']:.1f} ms max {health['max_ms']:.1f} ms ({health['n']})"
        )


if __name__ == "__main__":
    main()

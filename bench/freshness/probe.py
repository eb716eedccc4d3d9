"""Watches for changes to show in DNS, /v1 and /eureka/apps, in a process of its own (nothing else
competes with it for a GIL). Reads one watch per stdin line, as JSON:
{"id": ..., "service": ..., "address": "ip:port", "present": true|false}; keeps asking each view
every 2 ms until it agrees, and prints one JSON line per watch: its id and, per view, the
time.monotonic() at which that view first agreed (CLOCK_MONOTONIC is system-wide)."""

from __future__ import annotations

import http.client
import json
import select
import sys
import time
from typing import Any

import dns.message
import dns.query

VIEWS = ("dns", "v1", "eureka")
GIVE_UP_S = 120.0  # a view that never agrees is reported without its time, never waited on forever


def main(dns_port: int, http_port: int, zone: str) -> None:
    connection = http.client.HTTPConnection("127.0.0.1", http_port, timeout=5)
    pending: dict[str, dict[str, Any]] = {}
    print("ready", flush=True)
    open_input = True
    while open_input or pending:
        readable, _, _ = select.select([sys.stdin], [], [], 0.002 if pending else 1.0)
        if readable:
            line = sys.stdin.readline()
            if not line:
                open_input = False
            elif line.strip():
                watch = json.loads(line)
                pending[watch["id"]] = {**watch, "seen": {}, "since": time.monotonic()}
        for watch_id, watch in list(pending.items()):
            for view in VIEWS:
                if view not in watch["seen"] and _agrees(view, watch, dns_port, connection, zone) == watch["present"]:
                    watch["seen"][view] = time.monotonic()
            if len(watch["seen"]) == len(VIEWS) or time.monotonic() - watch["since"] > GIVE_UP_S:
                print(json.dumps({"id": watch_id, "seen": watch["seen"]}), flush=True)
                del pending[watch_id]


def _agrees(view: str, watch: dict[str, Any], dns_port: int, connection: http.client.HTTPConnection, zone: str) -> bool:
    """Whether `view` holds the watched address now."""
    service, address = watch["service"], watch["address"]
    if view == "dns":
        query = dns.message.make_query(f"{service}.{zone}", "TXT", use_edns=0, payload=4096)
        reply = dns.query.udp(query, "127.0.0.1", port=dns_port, timeout=2)
        return any(r.to_text().strip('"') == address for rrset in reply.answer for r in rrset)
    path = f"/v1/services/{service}" if view == "v1" else f"/eureka/apps/{service.upper()}"
    connection.request("GET", path, headers={"Accept": "application/json"})
    body = connection.getresponse().read().decode()
    if view == "v1":
        host, port = address.rsplit(":", 1)
        return any(e["host"] == host and e["port"] == int(port) for e in json.loads(body).get("endpoints", []))
    return f'"instanceId": "{address}"' in body or f'"instanceId":"{address}"' in body


if __name__ == "__main__":
    main(int(sys.argv[1]), int(sys.argv[2]), sys.argv[3])

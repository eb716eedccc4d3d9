"""Asks DNS for one SRV name every 2 ms until SIGTERM, in a process of its own (so nothing else
competes with it for a GIL), then prints one JSON line: each answer's send time, duration and
the ports it held and the rcode, as [time.monotonic(), seconds, [ports], rcode]
(CLOCK_MONOTONIC is system-wide)."""

from __future__ import annotations

import json
import signal
import sys
import time

import dns.flags
import dns.message
import dns.query
import dns.rcode


def main(port: int, name: str) -> None:
    running = True

    def stop(*_: object) -> None:
        nonlocal running
        running = False

    signal.signal(signal.SIGTERM, stop)
    query = dns.message.make_query(name, "SRV", use_edns=0, payload=1232)
    samples = []
    print("ready", flush=True)
    while running:
        sent = time.monotonic()
        try:
            reply = dns.query.udp(query, "127.0.0.1", port=port, timeout=2)
            ports = sorted(int(r.port) for rrset in reply.answer for r in rrset)
            rcode = dns.rcode.to_text(reply.rcode()) + (" TC" if reply.flags & dns.flags.TC else "")
        except Exception as exc:  # noqa: BLE001 - a lost answer counts as a 2 s one
            ports, rcode = [], type(exc).__name__
        samples.append([sent, time.monotonic() - sent, ports, rcode])
        time.sleep(0.002)
    print(json.dumps(samples), flush=True)


if __name__ == "__main__":
    main(int(sys.argv[1]), sys.argv[2])

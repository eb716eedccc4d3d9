"""Serve the benchmark estate with discobridge's DNS frontend on uvloop until SIGTERM."""

from __future__ import annotations

import asyncio
import signal
import sys

import uvloop
from estate import store  # bench/ is the script's directory

from discobridge.config import HostPort
from discobridge.frontends.dns import DnsFrontend
from discobridge.metrics import Metrics


async def main(port: int) -> None:
    frontend = DnsFrontend(store=store(), metrics=Metrics.create(), listen=[HostPort("127.0.0.1", port)])
    await frontend.start()
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    print("ready", flush=True)
    await stop.wait()
    await frontend.stop()


if __name__ == "__main__":
    uvloop.run(main(int(sys.argv[1])))

"""Serve the benchmark registry with discobridge's HTTP app on uvloop until SIGTERM."""

from __future__ import annotations

import asyncio
import signal
import sys

import uvloop
from estate import store  # bench/eureka is the script's directory

from discobridge.config import HostPort, parse_config
from discobridge.frontends.http import HttpFrontend, make_app
from discobridge.metrics import Metrics


async def main(port: int) -> None:
    config = parse_config('[aws]\nregion = "us-east-1"\n[dns]\nzone = "b.test"\n', "<bench>")
    app = make_app(store=store(), metrics=Metrics.create(), config=config)
    frontend = HttpFrontend(app=app, listen=HostPort("127.0.0.1", port))
    await frontend.start()
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    print("ready", flush=True)
    await stop.wait()
    await frontend.stop()


if __name__ == "__main__":
    uvloop.run(main(int(sys.argv[1])))

"""Serve the benchmark estate with discobridge's DNS frontend on uvloop until SIGTERM."""

from __future__ import annotations

import sys
from pathlib import Path

import uvloop

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from common import serve_until_sigterm
from estate import store

from discobridge.config import HostPort
from discobridge.frontends.dns import DnsFrontend
from discobridge.metrics import Metrics


async def main(port: int) -> None:
    frontend = DnsFrontend(store=store(), metrics=Metrics.create(), listen=[HostPort("127.0.0.1", port)])
    await serve_until_sigterm(frontend)


if __name__ == "__main__":
    uvloop.run(main(int(sys.argv[1])))

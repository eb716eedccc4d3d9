"""Serve the benchmark registry with discobridge's HTTP app on uvloop until SIGTERM."""

from __future__ import annotations

import sys
from pathlib import Path

import uvloop

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from common import serve_until_sigterm
from estate import store

from discobridge.config import HostPort, parse_config
from discobridge.frontends.http import HttpFrontend, make_app
from discobridge.metrics import Metrics


async def main(port: int) -> None:
    config = parse_config('[aws]\nregion = "us-east-1"\n[dns]\nzone = "b.test"\n', "<bench>")
    app = make_app(store=store(), metrics=Metrics.create(), config=config)
    await serve_until_sigterm(HttpFrontend(app=app, listen=HostPort("127.0.0.1", port)))


if __name__ == "__main__":
    uvloop.run(main(int(sys.argv[1])))

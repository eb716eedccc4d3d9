"""Fixtures of the end-to-end tests: the installed command as a process."""

from __future__ import annotations

import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers import COMMAND, free_dns_port, free_port, read_until

Demo = tuple[subprocess.Popen[str], Path, tuple[int, int]]


@pytest.fixture
def demo(tmp_path: Path) -> Iterator[Demo]:
    dns_port, http_port = free_dns_port(), free_port(socket.SOCK_STREAM)
    process = subprocess.Popen(
        [*COMMAND, "demo", "--dir", str(tmp_path / "demo"), "--dns-port", str(dns_port), "--http-port", str(http_port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=tmp_path,
    )
    try:
        lines = read_until(process.stdout, "config written to:")
        path = Path(lines[-1].split("config written to:")[1].strip())
        yield process, path, (dns_port, http_port)
    finally:
        if process.poll() is None:
            process.kill()
        process.wait(timeout=10)
        for stream in (process.stdout, process.stderr):
            stream.close()  # type: ignore[union-attr]

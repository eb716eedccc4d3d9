"""The README's commands run against a demo started here: every fenced `sh` block that talks to
the demo is executed line by line (with this test's ports and paths), so the README cannot drift
from the product."""

from __future__ import annotations

import re
import subprocess

from tests.e2e.conftest import Demo
from tests.helpers import COMMAND, ROOT, read_until, system_tool

# What in a README command names the demo's defaults, and what this test's demo uses instead.
DEMO_MARKERS = ("127.0.0.1", ".demo/config.toml")


def demo_commands() -> list[str]:
    blocks = re.findall(r"```sh\n(.*?)```", (ROOT / "README.md").read_text(), flags=re.S)
    lines = [line.split("  #")[0].strip() for block in blocks for line in block.splitlines()]
    return [line for line in lines if line and any(marker in line for marker in DEMO_MARKERS)]


def test_the_readme_has_demo_commands_for_each_frontend() -> None:
    commands = demo_commands()
    assert any(c.startswith("dig ") for c in commands) and any(c.startswith("curl ") for c in commands)
    assert any(" snapshot " in c for c in commands)


def test_every_readme_command_that_talks_to_the_demo_works(demo: Demo) -> None:
    system_tool("dig", package="bind9-dnsutils")
    system_tool("curl", package="curl")
    process, config, (dns_port, http_port) = demo
    read_until(process.stderr, "snapshot_first_published")  # the demo's first complete snapshot
    for command in demo_commands():
        actual = (
            command.replace("-p 5353", f"-p {dns_port}")
            .replace("127.0.0.1:8080", f"127.0.0.1:{http_port}")
            .replace(".demo/config.toml", str(config))
            .replace(".venv/bin/discobridge", " ".join(COMMAND))
        )
        result = subprocess.run(["bash", "-c", actual], capture_output=True, text=True, timeout=60, check=False)
        assert result.returncode == 0 and result.stdout.strip(), f"{command}\n{result.stdout}{result.stderr}"
        assert "NXDOMAIN" not in result.stdout and "SERVFAIL" not in result.stdout, command

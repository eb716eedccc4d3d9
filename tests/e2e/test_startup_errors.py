"""A listen address that cannot be bound, or a listen value that is not an address, stops the
real process at start with one line naming the key, the address and the reason: no traceback."""

from __future__ import annotations

import ctypes
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers import COMMAND, held_dns_port

BASE = '[aws]\nregion = "us-east-1"\nendpoint_url = "http://127.0.0.1:9"\n[dns]\nzone = "d.test"\n'


@pytest.fixture
def taken() -> Iterator[int]:
    """A port on 127.0.0.1 held on both UDP and TCP by this test."""
    with held_dns_port() as port:
        yield port


def start(config: str, *args: str, unprivileged: bool = False) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "AWS_EC2_METADATA_DISABLED": "true", "DISCOBRIDGE_CONFIG": config}
    return subprocess.run(
        [*COMMAND, *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
        preexec_fn=_drop_bind_privilege if unprivileged else None,
    )


def _drop_bind_privilege() -> None:
    """In the child: give up CAP_NET_BIND_SERVICE for good, as a non-root user runs without it
    (root keeps every other capability, which is all this test needs of it)."""
    pr_capbset_drop, cap_net_bind_service = 24, 10
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(pr_capbset_drop, cap_net_bind_service, 0, 0, 0) != 0 and os.geteuid() == 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_CAPBSET_DROP) failed")


def one_line(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 1, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    problems = [line for line in result.stderr.splitlines() if line.startswith("discobridge:")]
    assert len(problems) == 1, result.stderr
    return problems[0]


def test_a_dns_address_in_use(taken: int) -> None:
    config = BASE + f'listen = ["127.0.0.1:{taken}"]\n[http]\nlisten = "127.0.0.1:0"\n'
    line = one_line(start(config, "run"))
    assert line.startswith(f"discobridge: [dns] listen 127.0.0.1:{taken}: cannot listen: Address already in use")


def test_an_http_address_in_use(taken: int) -> None:
    config = BASE + f'listen = ["127.0.0.1:0"]\n[http]\nlisten = "127.0.0.1:{taken}"\n'
    line = one_line(start(config, "run"))
    assert line.startswith(f"discobridge: [http] listen 127.0.0.1:{taken}: cannot listen: Address already in use")


def _privileged_ports() -> bool:
    try:
        return int(Path("/proc/sys/net/ipv4/ip_unprivileged_port_start").read_text()) > 53
    except OSError:
        return False


@pytest.mark.skipif(not _privileged_ports(), reason="port 53 is not privileged on this machine")
def test_port_53_without_the_privilege() -> None:
    config = BASE + 'listen = ["127.0.0.1:53"]\n[http]\nlisten = "127.0.0.1:0"\n'
    line = one_line(start(config, "run", unprivileged=True))
    assert line.startswith("discobridge: [dns] listen 127.0.0.1:53: cannot listen: Permission denied")
    assert "CAP_NET_BIND_SERVICE" in line


def test_an_address_that_is_not_an_ip_is_refused_by_check_and_run() -> None:
    config = BASE + 'listen = ["300.1.1.1:53"]\n'
    for command in ("check", "run"):
        line = one_line(start(config, command))
        assert line == (
            "discobridge: config error: $DISCOBRIDGE_CONFIG: [dns] listen: expected an IP address "
            "such as 0.0.0.0 or [::1], got '300.1.1.1' in '300.1.1.1:53'"
        )


def test_the_demo_names_the_flag_that_picks_another_port(taken: int, tmp_path: Path) -> None:
    result = subprocess.run(
        [*COMMAND, "demo", "--dir", str(tmp_path / "demo"), "--dns-port", str(taken), "--http-port", "0"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        cwd=tmp_path,
    )
    line = one_line(result)
    assert f"[dns] listen 127.0.0.1:{taken}: cannot listen" in line and line.endswith("with --dns-port")


def test_run_without_a_config_says_so_once_and_demo_help_says_what_the_demo_is() -> None:
    env = {k: v for k, v in os.environ.items() if k != "DISCOBRIDGE_CONFIG"}
    result = subprocess.run([*COMMAND, "run"], capture_output=True, text=True, env=env, timeout=60, check=False)
    assert result.returncode == 1
    assert result.stderr.strip() == (
        "discobridge: config error: give a config file with -c FILE or its TOML text in $DISCOBRIDGE_CONFIG"
    )
    shown = subprocess.run([*COMMAND, "demo", "--help"], capture_output=True, text=True, timeout=60, check=True)
    assert "embedded fake AWS estate" in shown.stdout.split("options:")[0]

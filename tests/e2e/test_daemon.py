"""The installed command end to end: the demo, `snapshot` against it, and `run` stopping on SIGTERM."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

import dns.message
import dns.query
import pytest

from discobridge.fakeaws.estate import Container, Estate
from discobridge.fakeaws.server import FakeAws
from tests.helpers import COMMAND, daemon_process, events, example_config, read_until, system_tool


def test_demo_serves_and_snapshot_lists_its_estate_with_real_host_ports(
    demo: tuple[subprocess.Popen[str], Path, tuple[int, int]],
) -> None:
    process, path, demo_ports = demo
    assert path.is_file() and "endpoint_url" in path.read_text()
    read_until(process.stderr, "source_refreshed")  # the daemon's first poll succeeded

    result = subprocess.run(
        [*COMMAND, "snapshot", "-c", str(path), "--json"], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr
    services = {s["name"]: s["endpoints"] for s in json.loads(result.stdout)["services"]}
    assert set(services) == {
        "billing",
        "checkout",
        "inventory",
        "node-exporter",
        "orders",
        "payments",
        "report-builder",
    }
    assert {e["source"] for e in services["billing"]} == {"cloudmap"}
    orders = services["orders"]
    assert {e["cluster"] for e in orders} == {"prod", "staging"}
    assert {e["health"] for e in orders} == {"healthy", "unhealthy", "draining"}
    assert all(32768 <= e["port"] < 61000 for e in orders)  # ephemeral host ports, not 8080
    assert {e["port"] for e in services["node-exporter"]} == {9100}
    assert {e["port"] for e in services["payments"]} == {8443}
    assert {e["az"] for s in services.values() for e in s} == {"us-east-1a", "us-east-1b", "eu-west-1a"}
    assert {(e["account"], e["region"]) for e in services["inventory"]} == {("dr", "eu-west-1")}  # through its role
    assert {(e["account"], e["region"]) for e in services["orders"]} == {("local", "us-east-1")}

    http = f"http://127.0.0.1:{demo_ports[1]}"
    with urllib.request.urlopen(f"{http}/v1/resolve/orders", timeout=5) as response:
        host, port = response.read().decode().split(":")
    assert any(e["host"] == host and e["port"] == int(port) and e["health"] == "healthy" for e in orders)
    with urllib.request.urlopen(f"{http}/", timeout=5) as response:
        assert b"orders" in response.read()

    text = subprocess.run(
        [*COMMAND, "snapshot", "-c", str(path)], capture_output=True, text=True, timeout=60, check=False
    )
    assert text.returncode == 0 and "orders  (4 endpoints)" in text.stdout
    assert "report-builder  (1 endpoint)\n" in text.stdout

    process.send_signal(signal.SIGINT)
    assert process.wait(timeout=15) == 0


def dig(port: int, *args: str) -> list[str]:
    result = subprocess.run(
        ["dig", "@127.0.0.1", "-p", str(port), "+short", "+tries=1", "+time=2", *args],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    return [line for line in result.stdout.splitlines() if line]


@pytest.fixture
def dig_available() -> None:
    system_tool("dig", package="bind9-dnsutils")


def test_run_serves_dns_from_ecs_until_sigterm_then_exits_zero(
    fake_aws: FakeAws, estate: Estate, tmp_path: Path, dig_available: None
) -> None:
    estate.cluster("prod")
    hosts = estate.hosts("prod", 2)
    definition = estate.task_definition("orders", Container("web", ports=(8080,)))
    tasks = estate.service("prod", "orders", definition, hosts)
    described = estate.ecs.describe_tasks(cluster="prod", tasks=tasks)["tasks"]
    ports = sorted(str(t["containers"][0]["networkBindings"][0]["hostPort"]) for t in described)

    config = example_config(tmp_path, fake_aws.url)
    env = {**os.environ, "AWS_EC2_METADATA_DISABLED": "true"}
    with daemon_process(["run", "-c", str(config)], env) as process:
        seen = events(read_until(process.stderr, "source_refreshed"))
        refreshed = seen["source_refreshed"]
        assert refreshed["source"] == "ecs" and refreshed["endpoints"] == 2 and refreshed["services"] == 1
        assert refreshed["level"] == "info" and "duration_s" in refreshed and refreshed["generation"] == 1
        port = int(str(seen["dns_listening"]["addresses"][0]).rsplit(":", 1)[1])  # type: ignore[index]

        zone = "discobridge.internal"
        srv = dig(port, f"orders.{zone}", "SRV")
        assert sorted(line.split()[2] for line in srv) == ports
        assert len(dig(port, f"orders.prod.{zone}", "A")) == 2
        assert len(dig(port, f"_orders._tcp.{zone}", "SRV")) == 2
        answer = dns.query.udp(dns.message.make_query(f"orders.{zone}", "TXT"), "127.0.0.1", port=port, timeout=2)
        assert sorted(item.to_text().strip('"').rsplit(":")[1] for item in answer.answer[0]) == ports

        http = str(seen["http_listening"]["address"])
        with urllib.request.urlopen(f"http://{http}/v1/resolve/orders", timeout=5) as response:
            assert response.read().decode().rsplit(":", 1)[1] in ports
        with urllib.request.urlopen(f"http://{http}/healthz", timeout=5) as response:
            assert json.loads(response.read())["status"] == "ok"

        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=15) == 0


def test_snapshot_exits_one_with_the_error_when_aws_fails(fake_aws: FakeAws, tmp_path: Path) -> None:
    fake_aws.faults.fail("ListClusters", code="AccessDeniedException", status=400, message="not allowed")
    config = tmp_path / "config.toml"
    config.write_text(f'[aws]\nregion = "us-east-1"\nendpoint_url = "{fake_aws.url}"\n[dns]\nzone = "d.test"\n')
    result = subprocess.run(
        [*COMMAND, "snapshot", "-c", str(config)], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 1
    assert "AccessDeniedException" in result.stderr and "ListClusters" in result.stderr


def http_get(address: str, path: str) -> tuple[int, dict[str, object]]:
    try:
        with urllib.request.urlopen(f"http://{address}{path}", timeout=5) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def txt(port: int) -> list[str]:
    query = dns.message.make_query("orders.discobridge.internal", "TXT")
    answer = dns.query.udp(query, "127.0.0.1", port=port, timeout=2)
    return sorted(item.to_text() for rrset in answer.answer for item in rrset)


def test_sigterm_drains_then_exits_and_a_restart_answers_from_the_snapshot_file(
    fake_aws: FakeAws, estate: Estate, tmp_path: Path
) -> None:
    estate.web_service("prod", "orders", hosts=2)
    snapshot = tmp_path / "state" / "snapshot.json"
    config = example_config(tmp_path, fake_aws.url)
    text = config.read_text().replace("drain_s = 5", "drain_s = 1")
    config.write_text(text.replace('# path = "/var/lib/discobridge/snapshot.json"', f'path = "{snapshot}"'))
    env = {**os.environ, "AWS_EC2_METADATA_DISABLED": "true"}

    with daemon_process(["run", "-c", str(config)], env) as process:
        seen = events(read_until(process.stderr, "snapshot_saved"))
        port = int(str(seen["dns_listening"]["addresses"][0]).rsplit(":", 1)[1])  # type: ignore[index]
        http = str(seen["http_listening"]["address"])
        served = txt(port)
        assert len(served) == 2 and snapshot.is_file()
        process.send_signal(signal.SIGTERM)
        read_until(process.stderr, "daemon_draining")
        status, body = http_get(http, "/healthz")
        assert status == 503 and body["reason"] == "shutting down"
        assert txt(port) == served  # still answering while the load balancer lets go
        started = time.monotonic()
        assert process.wait(timeout=1 + 5) == 0
        assert time.monotonic() - started < 1 + 5

    # Restart with AWS unreachable: the saved snapshot answers at once, marked as old as it is.
    dead = socket.socket()
    dead.bind(("127.0.0.1", 0))
    down = f"http://127.0.0.1:{dead.getsockname()[1]}"
    config.write_text(config.read_text().replace(fake_aws.url, down).replace("drain_s = 1", "drain_s = 60"))
    try:
        with daemon_process(["run", "-c", str(config)], env) as process:
            seen = events(read_until(process.stderr, "http_listening"))
            assert "snapshot_restored" in seen
            port = int(str(seen["dns_listening"]["addresses"][0]).rsplit(":", 1)[1])  # type: ignore[index]
            assert txt(port) == served
            status, body = http_get(str(seen["http_listening"]["address"]), "/healthz")
            assert status == 200 and float(body["age_s"]) > 0  # type: ignore[arg-type]
            process.send_signal(signal.SIGTERM)
            read_until(process.stderr, "daemon_draining")
            process.send_signal(signal.SIGTERM)  # a second signal cuts the 60 s drain short
            assert process.wait(timeout=10) == 0
    finally:
        dead.close()


def test_run_takes_its_config_from_discobridge_config_with_no_file(fake_aws: FakeAws, estate: Estate) -> None:
    estate.web_service("prod", "orders")
    toml = (
        f'[aws]\nregion = "us-east-1"\nendpoint_url = "{fake_aws.url}"\n'
        '[ecs]\npoll_interval_s = 0.2\n[dns]\nzone = "env.test"\nlisten = ["127.0.0.1:0"]\n'
        '[http]\nlisten = "127.0.0.1:0"\ndrain_s = 0\n'
    )
    env = {**os.environ, "AWS_EC2_METADATA_DISABLED": "true", "DISCOBRIDGE_CONFIG": toml}
    check = subprocess.run([*COMMAND, "check"], capture_output=True, text=True, env=env, timeout=30, check=False)
    assert check.returncode == 0 and check.stdout.strip() == "$DISCOBRIDGE_CONFIG: ok"
    with daemon_process(["run"], env) as process:
        seen = events(read_until(process.stderr, "source_refreshed"))
        assert seen["source_refreshed"]["endpoints"] == 1
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=10) == 0

    bad = {**env, "DISCOBRIDGE_CONFIG": toml.replace("zone", "zome")}
    failed = subprocess.run([*COMMAND, "run"], capture_output=True, text=True, env=bad, timeout=30, check=False)
    assert failed.returncode == 1
    assert failed.stderr.strip().startswith("discobridge: config error: $DISCOBRIDGE_CONFIG: [dns] zome: unknown key")
    unset = {k: v for k, v in env.items() if k != "DISCOBRIDGE_CONFIG"}
    missing = subprocess.run([*COMMAND, "run"], capture_output=True, text=True, env=unset, timeout=30, check=False)
    assert missing.returncode == 1 and "DISCOBRIDGE_CONFIG" in missing.stderr

"""The embedded demo: a realistic ECS estate in a fake AWS, and the config that points at it."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from discobridge.config import Config, load_config
from discobridge.fakeaws.estate import Container, Estate
from discobridge.fakeaws.server import FakeAws

DEMO_ZONE = "discobridge.internal"
# Another account, read through a role there ([[accounts]]), with a cluster in another region.
DR_ACCOUNT_ID, DR_REGION = "210987654321", "eu-west-1"
DNS_PORT = 5353
HTTP_PORT = 8080


def seed_demo(estate: Estate) -> None:
    """Two clusters, four hosts in two zones, and the cases discobridge exists for."""
    estate.cluster("prod")
    estate.cluster("staging")
    prod_a = estate.hosts("prod", 2, az="a")
    prod_b = estate.hosts("prod", 1, az="b")
    staging_b = estate.hosts("staging", 1, az="b")
    prod = prod_a + prod_b

    # Bridge mode, dynamic host ports: the reason discobridge exists.
    orders = estate.task_definition("orders", Container("web", ports=(8080,), health_check=True))
    orders_tasks = estate.service("prod", "orders", orders, prod)
    estate.set_health("prod", orders_tasks[1], "UNHEALTHY")
    estate.service("staging", "orders", orders, staging_b)

    # Two containers with labels: the app port is chosen by label, the sidecar never published.
    checkout = estate.task_definition(
        "checkout-v2",
        Container("log-router", ports=(24224,), labels={"discobridge.enable": "false"}),
        Container("envoy", ports=(9901,)),
        Container(
            "app",
            ports=(8080, 8081),
            labels={"discobridge.port": "8080", "discobridge.name": "checkout"},
            port_names={8081: "admin"},  # a named port: _admin._tcp.checkout.<zone>, /v1 "ports"
        ),
    )
    estate.service("prod", "checkout-v2", checkout, prod_a + prod_b)

    # Host mode: the host port is the container port.
    exporter = estate.task_definition("node-exporter", Container("exporter", ports=(9100,)), network_mode="host")
    estate.service("prod", "node-exporter", exporter, prod)

    # awsvpc: each task has its own ENI and listens on its container port.
    payments = estate.task_definition("payments", Container("api", ports=(8443,)), network_mode="awsvpc")
    estate.fargate_service("prod", "payments", payments, count=2)

    # A standalone task (group "family:report-builder").
    reports = estate.task_definition("report-builder", Container("worker", ports=(8000,)))
    estate.place("prod", reports, prod_b)

    # A host being drained: its tasks are published as draining.
    estate.drain("prod", prod_b[0])

    # A Cloud Map namespace with a non-ECS service registered by another team.
    namespace = estate.namespace("demo.local")
    for index, az in ((1, "a"), (2, "b")):
        estate.cloudmap_instance(
            namespace,
            "billing",
            f"billing-{index}",
            {
                "AWS_INSTANCE_IPV4": f"10.0.{index}.200",
                "AWS_INSTANCE_PORT": "7000",
                "AVAILABILITY_ZONE": f"us-east-1{az}",
            },
        )


def seed_dr_account(estate: Estate) -> None:
    """The other account: one service on two hosts in one cluster, in its own region."""
    estate.web_service("dr", "inventory", hosts=2)


def demo_config_text(endpoint_url: str, dns: str, http: str, topic_arn: str) -> str:
    return f"""# Written by `discobridge demo`: the daemon reads the fake AWS at {endpoint_url}.
[aws]
region = "us-east-1"
endpoint_url = "{endpoint_url}"

[ecs]
clusters = ["*"]
poll_interval_s = 5

[cloudmap]
namespaces = ["demo.local"]
poll_interval_s = 5

[events]
topic_arn = "{topic_arn}"     # the fake EventBridge publishes every ECS change here

[dns]
zone = "{DEMO_ZONE}"
listen = ["{dns}"]

[http]
listen = "{http}"

[log]
format = "console"

[[accounts]]
name = "dr"                 # S.dr.{DEMO_ZONE}, "account": "dr" in /v1, aws-account in Eureka
role_arn = "arn:aws:iam::{DR_ACCOUNT_ID}:role/discobridge-read"
regions = ["{DR_REGION}"]
"""


@dataclass(frozen=True)
class Demo:
    config_path: Path
    config: Config
    banner: str


@contextmanager
def start_demo(directory: Path, dns_port: int = DNS_PORT, http_port: int = HTTP_PORT) -> Iterator[Demo]:
    """Start the fake AWS, seed it, write the config; stop the fake AWS on exit."""
    aws = FakeAws().start()
    try:
        estate = Estate(aws.url)
        topic = estate.events_topic()
        seed_demo(estate)
        dr = Estate(aws.url, DR_REGION, DR_ACCOUNT_ID)
        seed_dr_account(dr)
        dr.forward_events(topic)  # as a rule there forwarding to this account's bus would
        directory.mkdir(parents=True, exist_ok=True)
        path = (directory / "config.toml").resolve()
        dns, http = f"127.0.0.1:{dns_port}", f"127.0.0.1:{http_port}"
        path.write_text(demo_config_text(aws.url, dns, http, topic), encoding="utf-8")
        yield Demo(path, load_config(path), _banner(path, aws.url, dns_port, http))
    finally:
        aws.stop()


def _banner(path: Path, url: str, dns_port: int, http: str) -> str:
    command = ".venv/bin/discobridge" if Path(".venv/bin/discobridge").exists() else "discobridge"
    dig = f"dig @127.0.0.1 -p {dns_port}"
    return f"""
discobridge demo: a fake AWS with 2 ECS clusters and 4 hosts in 2 zones runs at {url},
and account "dr" ({DR_ACCOUNT_ID}) with a cluster in {DR_REGION}, read through a role there
config written to: {path}
ECS events are on: the fake EventBridge announces every task change, served in under a second.

Try, in another terminal, while this runs:
  {command} snapshot -c {path}
  {dig} orders.{DEMO_ZONE} SRV          # the host port of every task being served
  {dig} orders.{DEMO_ZONE} A +short     # host IPs of the healthy tasks
  {dig} orders.{DEMO_ZONE} TXT +short   # "ip:port" per healthy task
  {dig} _checkout._tcp.{DEMO_ZONE} SRV  # RFC 2782 form, for HAProxy, nginx, Java
  {dig} orders.staging.{DEMO_ZONE} SRV  # one cluster only
  {dig} _admin._tcp.checkout.{DEMO_ZONE} SRV   # a named port of each checkout task
  {dig} inventory.dr.{DEMO_ZONE} SRV    # one account only (inventory.{DR_REGION}.{DEMO_ZONE}: one region)
  curl -s http://{http}/v1/resolve/orders       # one healthy host:port, rotating
  curl -s http://{http}/v1/services/orders      # every endpoint with health, zone, task
  curl -s http://{http}/healthz                 # what an ALB health check sees
  curl -s http://{http}/v1/prometheus/targets   # what Prometheus' http_sd reads
  curl -s -H 'Accept: application/json' http://{http}/eureka/apps/ORDERS   # what Spring Cloud sees
  open http://{http}/ in a browser                 # the status page

Stop with Ctrl-C.
"""

"""The Eureka API on the wire: every acceptance check of reference eureka.md §10, on real HTTP."""

from __future__ import annotations

import gzip
import json
import re
import xml.etree.ElementTree as ET
from collections import Counter
from collections.abc import AsyncIterator, Callable
from typing import Any

import aiohttp
import pytest
from multidict import CIMultiDictProxy

from discobridge.config import HostPort
from discobridge.frontends.http import HttpFrontend, make_app
from discobridge.metrics import Metrics
from discobridge.model import Endpoint, Health
from discobridge.render.eureka import EurekaRenderer
from discobridge.render.eureka_wire import EurekaPaths
from discobridge.store import SnapshotStore
from tests.conftest import make_config
from tests.helpers import endpoint, make_store, publish

WALL = 1_764_230_400.0  # a fixed wall clock, so documents and golden files are repeatable
KNOWN_INSTANCE_KEYS = {
    "instanceId", "app", "appGroupName", "ipAddr", "sid", "port", "securePort", "homePageUrl", "statusPageUrl",
    "healthCheckUrl", "secureHealthCheckUrl", "vipAddress", "secureVipAddress", "countryId", "dataCenterInfo",
    "hostName", "status", "overriddenStatus", "overriddenstatus", "leaseInfo", "isCoordinatingDiscoveryServer",
    "metadata", "lastUpdatedTimestamp", "lastDirtyTimestamp", "actionType", "asgName",
}  # fmt: skip
STATUSES = {"UP", "DOWN", "STARTING", "OUT_OF_SERVICE", "UNKNOWN"}


def ep(service: str, ip: str, port: int, health: Health = Health.HEALTHY, az: str = "us-east-1a") -> Endpoint:
    return endpoint(service, port, host_ip=ip, host_port=port, health=health, az=az)


ESTATE = (
    ep("orders", "10.0.1.11", 32768),
    ep("orders", "10.0.1.11", 32771),  # a second task on the same host
    ep("orders", "10.0.2.12", 33000, Health.UNHEALTHY, "us-east-1b"),
    ep("orders", "10.0.2.13", 33001, Health.DRAINING, "us-east-1b"),
    ep("payments", "10.0.1.12", 32769),
)


class Eureka:
    def __init__(self, store: SnapshotStore, frontend: HttpFrontend, client: aiohttp.ClientSession) -> None:
        self.store, self.frontend, self.client = store, frontend, client
        self.wall = WALL
        assert frontend.address is not None
        self.base = f"http://127.0.0.1:{frontend.address.port}"

    def publish(self, endpoints: tuple[Endpoint, ...]) -> None:
        publish(self.store, endpoints)

    async def request(self, method: str, path: str, **headers: str) -> tuple[int, CIMultiDictProxy[str], bytes]:
        # aiohttp asks for gzip unless told otherwise; most tests want the plain body.
        headers = {"Accept-Encoding": "identity", **headers}
        async with self.client.request(method, self.base + path, headers=headers, auto_decompress=False) as r:
            return r.status, r.headers, await r.read()

    async def json(self, path: str) -> dict[str, Any]:
        status, headers, body = await self.request("GET", path, Accept="application/json")
        assert status == 200 and headers["Content-Type"] == "application/json"
        return json.loads(body)  # type: ignore[no-any-return]

    async def xml(self, path: str) -> ET.Element:
        status, headers, body = await self.request("GET", path)
        assert status == 200 and headers["Content-Type"] == "application/xml"
        return ET.fromstring(body)


@pytest.fixture
async def eureka() -> AsyncIterator[Eureka]:
    handle: list[Eureka] = []

    def wall() -> float:
        return handle[0].wall if handle else WALL

    store = make_store(eureka=EurekaRenderer(paths=EurekaPaths(), wall_clock=wall))
    metrics = Metrics.create()
    app = make_app(store=store, metrics=metrics, config=make_config("http://127.0.0.1:1"), wall_clock=wall)
    frontend = HttpFrontend(app=app, listen=HostPort("127.0.0.1", 0))
    await frontend.start()
    async with aiohttp.ClientSession(auto_decompress=False) as client:
        handle.append(Eureka(store, frontend, client))
        yield handle[0]
    await frontend.stop()


@pytest.fixture
async def served(eureka: Eureka) -> Eureka:
    eureka.publish(ESTATE)
    return eureka


def instances(document: dict[str, Any]) -> list[dict[str, Any]]:
    return [i for app in document["applications"]["application"] for i in app["instance"]]


async def test_before_the_first_poll_apps_and_delta_are_an_empty_registry(eureka: Eureka) -> None:
    for path in ("/eureka/apps/", "/eureka/apps/delta"):
        assert (await eureka.json(path))["applications"]["application"] == []
        assert (await eureka.xml(path)).findall("application") == []


@pytest.mark.parametrize(
    "path", ["/eureka/apps/", "/eureka/apps", "/eureka/v2/apps/", "/eureka/v2/apps"], ids=lambda p: p
)
async def test_1_apps_with_and_without_slash_under_both_prefixes(served: Eureka, path: str) -> None:
    assert len(instances(await served.json(path))) == 5


@pytest.mark.parametrize(
    ("accept", "content_type"),
    [("application/json", "application/json"), ("application/json, text/plain", "application/json"),
     ("", "application/xml"), ("*/*", "application/xml"), ("application/xml", "application/xml")],
    ids=["json", "json-listed", "none", "any", "xml"],
)  # fmt: skip
async def test_2_json_only_when_accept_contains_json(served: Eureka, accept: str, content_type: str) -> None:
    headers = {"Accept": accept} if accept else {}
    status, response, _ = await served.request("GET", "/eureka/apps/", **headers)
    assert status == 200 and response["Content-Type"] == content_type  # no charset: Jersey refuses odd ones


async def test_3_gzip_only_when_asked(served: Eureka) -> None:
    _, plain_headers, plain = await served.request("GET", "/eureka/apps/", Accept="application/json")
    _, gz_headers, zipped = await served.request(
        "GET", "/eureka/apps/", Accept="application/json", **{"Accept-Encoding": "gzip, deflate"}
    )
    assert "Content-Encoding" not in plain_headers and gz_headers["Content-Encoding"] == "gzip"
    assert gzip.decompress(zipped) == plain


async def test_4_shapes_arrays_and_strings(served: Eureka, eureka: Eureka) -> None:
    registry = (await served.json("/eureka/apps/"))["applications"]
    assert isinstance(registry["versions__delta"], str) and isinstance(registry["apps__hashcode"], str)
    assert isinstance(registry["application"], list)
    assert all(isinstance(app["instance"], list) for app in registry["application"])
    served.publish((ep("payments", "10.0.1.12", 32769),))  # one app, one instance: still arrays
    one = (await served.json("/eureka/apps/"))["applications"]["application"]
    assert isinstance(one, list) and isinstance(one[0]["instance"], list) and len(one[0]["instance"]) == 1


def _instance_checks(instance: dict[str, Any], app_name: str) -> None:
    assert set(instance) <= KNOWN_INSTANCE_KEYS, set(instance) - KNOWN_INSTANCE_KEYS
    assert instance["app"] == app_name == app_name.upper()
    assert instance["hostName"] == instance["ipAddr"] != ""
    assert instance["instanceId"] == f"{instance['ipAddr']}:{instance['port']['$']}"
    assert instance["status"] in STATUSES
    assert instance["port"] == {"$": instance["port"]["$"], "@enabled": "true"}
    assert isinstance(instance["port"]["$"], int)
    assert instance.get("securePort", {"@enabled": "false"})["@enabled"] == "false"
    assert instance["vipAddress"] == instance["secureVipAddress"] == app_name.lower()
    assert set(instance["dataCenterInfo"]) == {"@class", "name"}
    assert all(isinstance(v, str) for v in instance["metadata"].values())
    assert instance["homePageUrl"] == f"http://{instance['instanceId']}/actuator"
    assert instance["healthCheckUrl"] == f"http://{instance['instanceId']}/actuator/health"


async def test_5_every_instance_is_what_every_client_decodes(served: Eureka) -> None:
    registry = await served.json("/eureka/apps/")
    ids = [i["instanceId"] for i in instances(registry)]
    assert len(ids) == len(set(ids)) == 5
    for app in registry["applications"]["application"]:
        for instance in app["instance"]:
            _instance_checks(instance, app["name"])
    by_id = {i["instanceId"]: i for i in instances(registry)}
    assert by_id["10.0.1.11:32771"]["status"] == "UP"
    assert by_id["10.0.2.12:33000"]["status"] == "DOWN"
    assert by_id["10.0.2.13:33001"]["status"] == "OUT_OF_SERVICE"
    assert by_id["10.0.2.12:33000"]["metadata"] == {
        "zone": "us-east-1b", "ecs-cluster": "prod", "source": "ecs",
        "ecs-task-arn": "arn:aws:ecs:us-east-1:123456789012:task/prod/" + f"{33000:032x}",
        "aws-account": "local", "aws-region": "us-east-1",
    }  # fmt: skip


async def test_6_hashcode_counts_every_served_instance_by_status(served: Eureka) -> None:
    registry = await served.json("/eureka/apps/")
    counts = Counter(i["status"] for i in instances(registry))
    expected = "".join(f"{s}_{counts[s]}_" for s in sorted(counts))
    assert registry["applications"]["apps__hashcode"] == expected == "DOWN_1_OUT_OF_SERVICE_1_UP_3_"


async def test_7_xml_matches_json_with_attributes(served: Eureka) -> None:
    root = await served.xml("/eureka/apps/")
    xml_instances = root.findall("application/instance")
    assert len(xml_instances) == len(instances(await served.json("/eureka/apps/")))
    for instance in xml_instances:
        port = instance.find("port")
        assert port is not None and port.get("enabled") == "true" and port.text and port.text.isdigit()
        assert instance.find("securePort").get("enabled") == "false"  # type: ignore[union-attr]
        assert instance.find("dataCenterInfo").get("class")  # type: ignore[union-attr]
        assert instance.find("overriddenstatus") is not None
    assert root.findtext("apps__hashcode") == "DOWN_1_OUT_OF_SERVICE_1_UP_3_"


async def test_8_delta_carries_recent_changes_and_the_full_hash(served: Eureka) -> None:
    first = await served.json("/eureka/apps/delta")
    assert instances(first) == []  # the first snapshot is the initial load, not a change
    changed = (
        ep("orders", "10.0.1.11", 32768),  # kept
        ep("orders", "10.0.1.11", 32771, Health.UNHEALTHY),  # modified
        ep("orders", "10.0.3.14", 34000),  # added; 10.0.2.12 and 10.0.2.13 deleted
        ep("payments", "10.0.1.12", 32769),
    )
    served.publish(changed)
    delta = await served.json("/eureka/apps/delta")
    full = await served.json("/eureka/apps/")
    assert delta["applications"]["apps__hashcode"] == full["applications"]["apps__hashcode"] == "DOWN_1_UP_3_"
    assert int(delta["applications"]["versions__delta"]) == 2
    latest = {(i["instanceId"], i["actionType"]) for i in instances(delta)}
    assert {
        ("10.0.1.11:32771", "MODIFIED"), ("10.0.3.14:34000", "ADDED"),
        ("10.0.2.12:33000", "DELETED"), ("10.0.2.13:33001", "DELETED"),
    } <= latest  # fmt: skip
    deleted = next(i for i in instances(delta) if i["actionType"] == "DELETED")
    assert deleted["status"] in STATUSES and deleted["port"]["@enabled"] == "true"  # the last-known instance
    assert all("actionType" in i for i in instances(await served.json("/eureka/v2/apps/delta/")))


async def test_8_an_instance_added_then_removed_is_in_the_delta_once_with_its_last_action(served: Eureka) -> None:
    served.publish([*ESTATE, ep("orders", "10.0.3.14", 34000)])
    served.publish(ESTATE)  # gone again before any client fetched the delta
    actions = [(i["instanceId"], i["actionType"]) for i in instances(await served.json("/eureka/apps/delta"))]
    assert actions == [("10.0.3.14:34000", "DELETED")]  # one entry per instance, as the real server sends


async def test_9_a_vip_carries_the_hashcode_of_its_own_instances(served: Eureka) -> None:
    orders = (await served.json("/eureka/vips/orders"))["applications"]
    payments = (await served.json("/eureka/svips/payments"))["applications"]
    assert orders["apps__hashcode"] == "DOWN_1_OUT_OF_SERVICE_1_UP_2_"  # not the registry's DOWN_1_..._UP_3_
    assert payments["apps__hashcode"] == "UP_1_"


async def test_8_changes_leave_the_delta_after_three_minutes(served: Eureka) -> None:
    served.wall += 100
    served.publish(ESTATE[:4])  # payments' only instance deleted at WALL + 100
    served.wall += 90  # the first ADDED entries are now 190 s old, the deletion 90 s
    delta = await served.json("/eureka/apps/delta")
    assert [(i["instanceId"], i["actionType"]) for i in instances(delta)] == [("10.0.1.12:32769", "DELETED")]
    served.wall += 100
    assert instances(await served.json("/eureka/apps/delta")) == []
    assert (await served.json("/eureka/apps/delta"))["applications"][
        "apps__hashcode"
    ] == "DOWN_1_OUT_OF_SERVICE_1_UP_2_"


Check = Callable[[Any], bool]


@pytest.mark.parametrize(
    ("path", "root"),
    [("/eureka/apps/ORDERS", "application"), ("/eureka/apps/orders/", "application"),
     ("/eureka/apps/ORDERS/10.0.1.11:32771", "instance"), ("/eureka/instances/10.0.1.12:32769", "instance"),
     ("/eureka/vips/orders", "applications"), ("/eureka/svips/payments", "applications"),
     ("/eureka/v2/apps/Payments", "application")],
    ids=lambda v: v,
)  # fmt: skip
async def test_9_single_app_instance_and_vip_lookups(served: Eureka, path: str, root: str) -> None:
    document = await served.json(path)
    assert list(document) == [root]
    xml = await served.xml(path)
    assert xml.tag == root


@pytest.mark.parametrize(
    "path", ["/eureka/apps/NOPE", "/eureka/apps/ORDERS/10.9.9.9:1", "/eureka/instances/x", "/eureka/vips/nope"]
)
async def test_9_unknown_lookups_are_404_with_an_empty_body(served: Eureka, path: str) -> None:
    status, _, body = await served.request("GET", path, Accept="application/json")
    assert status == 404 and body == b""


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [("POST", "/eureka/apps/ORDERS", 204), ("PUT", "/eureka/apps/ORDERS/i-1?status=UP&lastDirtyTimestamp=1", 200),
     ("DELETE", "/eureka/apps/ORDERS/i-1", 200), ("PUT", "/eureka/apps/ORDERS/i-1/status?value=OUT_OF_SERVICE", 200),
     ("DELETE", "/eureka/apps/ORDERS/i-1/status", 200), ("POST", "/eureka/v2/apps/ORDERS/", 204)],
    ids=["register", "heartbeat", "cancel", "status", "status-delete", "register-v2"],
)  # fmt: skip
async def test_10_writes_are_accepted_and_change_nothing(served: Eureka, method: str, path: str, status: int) -> None:
    async def registry() -> tuple[int, dict[str, str], bytes]:
        """The registry as served: status, headers but the clock's (Date moves by itself), body."""
        got, headers, body = await served.request("GET", "/eureka/apps/", Accept="application/json")
        return got, {k: v for k, v in headers.items() if k.lower() != "date"}, body

    before = await registry()
    got, _, body = await served.request(method, path, **{"Content-Type": "application/json"})
    assert got == status and body == b""
    assert await registry() == before
    metrics = await served.request("GET", "/metrics")
    assert re.search(rb"discobridge_eureka_writes_total\{operation=\"\w+\"\} 1\.0", metrics[2])


async def test_etag_gives_304_per_representation(served: Eureka) -> None:
    _, headers, _ = await served.request("GET", "/eureka/apps/", Accept="application/json")
    etag = headers["ETag"]
    assert (await served.request("GET", "/eureka/apps/", Accept="application/json", **{"If-None-Match": etag}))[
        0
    ] == 304
    assert (await served.request("GET", "/eureka/apps/", **{"If-None-Match": etag}))[0] == 200  # XML differs


async def test_apps_json_and_xml_match_the_golden_files(served: Eureka, golden: Any) -> None:
    golden("eureka_apps.json", (await served.request("GET", "/eureka/apps/", Accept="application/json"))[2])
    golden("eureka_apps.xml", (await served.request("GET", "/eureka/apps/"))[2])

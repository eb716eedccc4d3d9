"""The HTTP frontend on a real socket on 127.0.0.1: resolver, health, metrics, status page, errors."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator, Sequence

import aiohttp
import pytest
from multidict import CIMultiDict

from discobridge.config import HostPort
from discobridge.frontends.http import HttpFrontend, make_app
from discobridge.metrics import Metrics
from discobridge.model import Endpoint, Health
from discobridge.store import SnapshotStore
from tests.conftest import make_config
from tests.helpers import PROD, FakeClock, endpoint, make_store, publish


def ep(service: str, n: int, health: Health = Health.HEALTHY, cluster: str = "prod") -> Endpoint:
    return endpoint(
        service, n, host_ip=f"10.0.0.{n}", host_port=32000 + n, health=health, az=f"us-east-1{'ab'[n % 2]}",
        cluster=cluster, task_arn=f"arn:aws:ecs:us-east-1:1:task/{cluster}/t{n}",
    )  # fmt: skip


ESTATE = (
    ep("orders", 1),
    ep("orders", 2),
    ep("orders", 3, Health.UNHEALTHY),
    ep("orders", 4, Health.DRAINING, cluster="staging"),
    ep("leaving", 5, Health.DRAINING),
    ep("billing", 6),
)


class Http:
    def __init__(self, store: SnapshotStore, frontend: HttpFrontend, metrics: Metrics, clock: FakeClock) -> None:
        self.store, self.frontend, self.metrics, self.clock = store, frontend, metrics, clock
        assert frontend.address is not None
        self.base = f"http://127.0.0.1:{frontend.address.port}"
        self.client = aiohttp.ClientSession()

    def publish(self, endpoints: Sequence[Endpoint]) -> None:
        publish(self.store, endpoints)

    async def get(self, path: str, **headers: str) -> tuple[int, CIMultiDict[str], bytes]:
        async with self.client.get(self.base + path, headers=headers) as response:
            return response.status, response.headers.copy(), await response.read()

    async def json(self, path: str, status: int = 200) -> dict[str, object]:
        async with self.client.get(self.base + path) as response:
            assert response.status == status, await response.text()
            assert response.content_type == "application/json"
            body: dict[str, object] = await response.json()
            return body


@pytest.fixture
async def http() -> AsyncIterator[Http]:
    clock, metrics = FakeClock(), Metrics.create()
    store = make_store(clock=clock)
    config = make_config("http://127.0.0.1:1", health={"max_staleness_s": 30})
    frontend = HttpFrontend(app=make_app(store=store, metrics=metrics, config=config), listen=HostPort("127.0.0.1", 0))
    await frontend.start()
    server = Http(store, frontend, metrics, clock)
    try:
        yield server
    finally:
        await server.client.close()
        await frontend.stop()


@pytest.fixture
async def served(http: Http) -> Http:
    http.publish(ESTATE)
    return http


async def test_before_the_first_snapshot_everything_is_503_with_a_reason(http: Http) -> None:
    for path in ("/v1/services", "/v1/services/orders", "/v1/resolve/orders", "/healthz"):
        body = await http.json(path, status=503)
        assert "first poll" in str(body.get("error") or body.get("reason"))
        assert "ecs cluster prod in local/us-east-1" in str(body.get("error") or body.get("reason"))
    status, _, page = await http.get("/")
    assert status == 200 and b"Waiting for the first poll" in page


async def test_service_list_with_generation_age_counts_and_etag(served: Http) -> None:
    served.clock.now += 2.5
    body = await served.json("/v1/services")
    assert body == {
        "generation": 1,
        "age_s": 2.5,
        "services": [
            {"name": "billing", "endpoints": 1, "healthy": 1},
            {"name": "leaving", "endpoints": 1, "healthy": 0},
            {"name": "orders", "endpoints": 4, "healthy": 2},
        ],
    }
    status, headers, _ = await served.get("/v1/services")
    etag = headers["ETag"]
    served.clock.now += 1  # only the age moved: same ETag, 304
    assert (await served.get("/v1/services", **{"If-None-Match": etag}))[0] == 304
    served.publish(ESTATE[:2])
    status, headers, _ = await served.get("/v1/services", **{"If-None-Match": etag})
    assert status == 200 and headers["ETag"] != etag


async def test_service_document_cluster_filter_and_errors(served: Http) -> None:
    body = await served.json("/v1/services/Orders")
    assert body["name"] == "orders"
    endpoints = body["endpoints"]
    assert isinstance(endpoints, list) and len(endpoints) == 4
    assert endpoints[0] == {
        "host": "10.0.0.1", "port": 32001, "health": "healthy", "az": "us-east-1b", "source": "ecs",
        "cluster": "prod", "task": "arn:aws:ecs:us-east-1:1:task/prod/t1", "container": "web", "instance_id": "",
        "account": "local", "region": "us-east-1", "ports": {"main": 32001},
    }  # fmt: skip
    assert [e["health"] for e in endpoints] == ["healthy", "healthy", "unhealthy", "draining"]
    staging = await served.json("/v1/services/orders?cluster=staging")
    assert [e["host"] for e in staging["endpoints"]] == ["10.0.0.4"]  # type: ignore[union-attr]
    assert (await served.json("/v1/services/orders?cluster=nope"))["endpoints"] == []
    missing = await served.json("/v1/services/nope", status=404)
    assert missing == {"error": "no service named 'nope'", "status": 404}

    _, headers, _ = await served.get("/v1/services/orders")
    assert headers["X-Discobridge-Index"] == "1"
    assert (await served.get("/v1/services/orders", **{"If-None-Match": headers["ETag"]}))[0] == 304


async def test_resolve_rotates_over_serving_endpoints_as_plain_text(served: Http) -> None:
    answers = []
    for _ in range(4):
        status, headers, body = await served.get("/v1/resolve/orders")
        assert status == 200 and headers["Content-Type"].startswith("text/plain")
        answers.append(body.decode())
    assert set(answers) == {"10.0.0.1:32001", "10.0.0.2:32002"}  # healthy only while any is
    assert (await served.json("/v1/resolve/nope", status=404))["status"] == 404
    assert "draining" in str((await served.json("/v1/resolve/leaving", status=503))["error"])
    served.publish([ep("orders", 3, Health.UNHEALTHY)])
    assert (await served.get("/v1/resolve/orders"))[2] == b"10.0.0.3:32003"  # fail open


async def test_resolve_honours_cluster_and_unknown_parameters_are_a_400(served: Http) -> None:
    served.publish([*ESTATE, ep("orders", 7, cluster="staging"), ep("orders", 8, Health.UNHEALTHY, cluster="qa")])
    assert {(await served.get("/v1/resolve/orders?cluster=staging"))[2] for _ in range(3)} == {b"10.0.0.7:32007"}
    assert (await served.get("/v1/resolve/orders?cluster=qa"))[2] == b"10.0.0.8:32008"  # fail open, in qa alone
    assert {(await served.get("/v1/resolve/orders?cluster=prod"))[2] for _ in range(4)} == {
        b"10.0.0.1:32001",
        b"10.0.0.2:32002",
    }
    assert "cluster 'dev'" in str((await served.json("/v1/resolve/orders?cluster=dev", status=503))["error"])
    for path in ("/v1/resolve/orders?clutser=prod", "/v1/services/orders?clutser=prod", "/v1/services?x=1"):
        error = str((await served.json(path, status=400))["error"])
        assert "unknown query parameter 'clutser'" in error or "unknown query parameter 'x'" in error, error


async def test_long_poll_returns_when_the_service_changes(served: Http) -> None:
    _, headers, _ = await served.get("/v1/services/orders")
    index = headers["X-Discobridge-Index"]
    waiting = asyncio.create_task(served.get(f"/v1/services/orders?index={index}&wait=30s"))
    served.publish([*ESTATE, ep("billing", 7)])  # another service changes: orders' watchers keep waiting
    await asyncio.sleep(0)
    assert not waiting.done()
    served.publish([*ESTATE, ep("billing", 7), ep("orders", 8)])
    status, headers, body = await asyncio.wait_for(waiting, timeout=5)
    assert status == 200 and headers["X-Discobridge-Index"] == "3" and b"10.0.0.8" in body


async def test_long_poll_times_out_with_the_same_index_and_answers_at_once_when_behind(served: Http) -> None:
    status, headers, _ = await served.get("/v1/services/orders?index=1&wait=50ms")
    assert status == 200 and headers["X-Discobridge-Index"] == "1"
    assert (await served.get("/v1/services/orders?index=0&wait=5m"))[1]["X-Discobridge-Index"] == "1"
    assert (await served.get("/v1/services/orders?index=99&wait=5m"))[0] == 200  # we restarted
    assert "index" in str((await served.json("/v1/services/orders?index=x", status=400))["error"])
    assert "wait" in str((await served.json("/v1/services/orders?index=1&wait=soon", status=400))["error"])


async def test_healthz_tracks_staleness_and_shutdown(served: Http) -> None:
    body = await served.json("/healthz")
    assert body["status"] == "ok" and body["age_s"] == 0.0
    assert body["partitions"] == {
        "ecs/local/us-east-1/prod": {
            "partition": "ecs cluster prod in local/us-east-1", "age_s": 0.0, "endpoints": 6,
            "consecutive_failures": 0, "last_error": None, "warnings": [],
        }
    }  # fmt: skip
    served.store.record_failure(PROD, "ecs cluster prod in local/us-east-1: ListTasks failed: ThrottlingException")
    served.clock.now += 31
    stale = await served.json("/healthz", status=503)
    assert "31.0 s old" in str(stale["reason"]) and "ThrottlingException" in str(stale["reason"])
    assert str(stale["reason"]).startswith("ecs cluster prod in local/us-east-1: data is 31.0 s old")
    served.publish(ESTATE)
    assert (await served.json("/healthz"))["status"] == "ok"
    served.frontend.begin_shutdown()
    assert (await served.json("/healthz", status=503))["reason"] == "shutting down"


async def test_metrics_expose_snapshot_endpoints_and_http_requests(served: Http) -> None:
    await served.get("/v1/services/orders")
    await served.get("/v1/services/nope")
    await served.get("/no/such/path")
    status, headers, body = await served.get("/metrics")
    text = body.decode()
    assert status == 200 and headers["Content-Type"].startswith("text/plain")
    assert 'discobridge_http_requests_total{route="/v1/services/{name}",status="200"} 1.0' in text
    assert 'discobridge_http_requests_total{route="/v1/services/{name}",status="404"} 1.0' in text
    assert 'discobridge_http_requests_total{route="unmatched",status="404"} 1.0' in text
    assert 'discobridge_snapshot_endpoints{health="unhealthy",service="orders"} 1.0' in text
    assert "discobridge_snapshot_age_seconds 0.0" in text
    assert "_created" not in text  # one series per counter that no dashboard reads, as most exporters do


async def test_status_page_lists_every_endpoint_without_external_assets(served: Http) -> None:
    status, headers, page = await served.get("/")
    html = page.decode()
    assert status == 200 and headers["Content-Type"].startswith("text/html")
    for address in ("10.0.0.1:32001", "10.0.0.4:32004", "10.0.0.6:32006"):
        assert address in html
    assert "2/4 healthy" in html and "staging" in html and "us-east-1a" in html
    assert not re.search(r"(src|href)=['\"]?(https?:)?//", html)


async def test_bad_requests_get_json_4xx_and_never_a_traceback(served: Http) -> None:
    assert await served.json("/no/such/path", status=404) == {"error": "Not Found", "status": 404}
    async with served.client.post(served.base + "/v1/services") as response:
        assert response.status == 405 and "GET" in response.headers["Allow"]
        assert (await response.json())["status"] == 405
    for raw, expected in (
        (b"GET /" + b"a" * 9000 + b" HTTP/1.1\r\nHost: x\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + b"b" * 9000 + b"\r\n\r\n", 431),
        (b"\x16\x03\x01\x02\x00garbage\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\n" + b"".join(b"X-%d: 1\r\n" % i for i in range(200)) + b"\r\n", 431),
    ):
        status_line, body = await raw_request(served, raw)
        assert status_line.split()[1] == str(expected).encode(), status_line
        assert b'"error"' in body and b"Traceback" not in body


async def raw_request(http: Http, raw: bytes) -> tuple[bytes, bytes]:
    assert http.frontend.address is not None
    reader, writer = await asyncio.open_connection("127.0.0.1", http.frontend.address.port)
    writer.write(raw)
    await writer.drain()
    response = await asyncio.wait_for(reader.read(), timeout=5)
    writer.close()
    await writer.wait_closed()
    head, _, body = response.partition(b"\r\n\r\n")
    return head.split(b"\r\n")[0], body


async def test_a_slow_client_does_not_hold_up_others(served: Http) -> None:
    assert served.frontend.address is not None
    _, slow = await asyncio.open_connection("127.0.0.1", served.frontend.address.port)
    slow.write(b"GET /v1/services HTTP/1.1\r\nHost: x\r\nX-Slow: ")  # and never finishes
    await slow.drain()
    assert (await served.json("/v1/services"))["generation"] == 1
    slow.close()
    await slow.wait_closed()


async def test_many_idle_connections_do_not_stop_service(served: Http) -> None:
    assert served.frontend.address is not None
    idle = [await asyncio.open_connection("127.0.0.1", served.frontend.address.port) for _ in range(300)]
    try:
        assert (await served.json("/v1/services"))["generation"] == 1
        assert (await served.get("/healthz"))[0] == 200
    finally:
        for _, writer in idle:
            writer.close()
        await asyncio.gather(*(writer.wait_closed() for _, writer in idle))


async def test_open_long_polls_answer_when_shutdown_begins(served: Http) -> None:
    waiting = asyncio.create_task(served.get("/v1/services/orders?index=1&wait=5m"))
    await served.get("/healthz")  # the long poll's request is in before this one answers
    served.frontend.begin_shutdown()
    status, headers, _ = await asyncio.wait_for(waiting, timeout=5)
    assert status == 200 and headers["X-Discobridge-Index"] == "1"


async def test_a_cluster_only_a_cloud_map_attribute_claims_never_selects(served: Http) -> None:
    claimed = endpoint("orders", 9, host_ip="10.0.9.9", source="cloudmap", task_arn="", cluster="prod")
    served.publish([*ESTATE, claimed])
    hosts = [e["host"] for e in (await served.json("/v1/services/orders?cluster=prod"))["endpoints"]]  # type: ignore[index]
    assert "10.0.9.9" not in hosts and "10.0.0.1" in hosts
    assert "10.0.9.9" in str(await served.json("/v1/services/orders"))  # still served, just not as prod's


async def test_account_region_and_cluster_narrow_services_and_resolve_together(served: Http) -> None:
    def where(n: int, account: str, region: str, cluster: str) -> Endpoint:
        return endpoint("api", n, host_ip=f"10.1.0.{n}", account=account, region=region, cluster=cluster)

    served.publish(
        [
            where(1, "shop", "eu-west-1", "prod"),
            where(2, "shop", "us-east-1", "prod"),
            where(3, "ops", "eu-west-1", "tools"),
        ]
    )

    async def hosts(query: str) -> list[str]:
        return [e["host"] for e in (await served.json(f"/v1/services/api?{query}"))["endpoints"]]  # type: ignore[index]

    assert await hosts("account=shop") == ["10.1.0.1", "10.1.0.2"]
    assert await hosts("region=eu-west-1") == ["10.1.0.1", "10.1.0.3"]
    assert await hosts("account=shop&region=eu-west-1&cluster=prod") == ["10.1.0.1"]
    assert await hosts("account=ops&cluster=prod") == []
    assert {(await served.get("/v1/resolve/api?account=ops"))[2] for _ in range(3)} == {b"10.1.0.3:32771"}
    error = str((await served.json("/v1/resolve/api?account=ops&region=us-east-1", status=503))["error"])
    assert "in account 'ops' in region 'us-east-1'" in error


async def test_the_status_page_refresh_takes_only_a_generation_and_answers_at_once_after_a_restart(
    served: Http,
) -> None:
    for bad in ("abc", "1" * 21, "-1"):
        assert (await served.get(f"/?after={bad}"))[0] == 400
    async with asyncio.timeout(5):  # not the 30 s a refresh may wait: we restarted since that page loaded
        status, _, page = await served.get("/?after=99999")
    assert status == 200 and b"orders" in page

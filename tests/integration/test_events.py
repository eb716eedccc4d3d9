"""ECS events through moto over HTTP (ECS, SNS, SQS): the fake EventBridge publishes every task and
container-instance change to a topic, the daemon's own queue receives it, and the change is served
long before a poll could have seen it. Polling is set far off in these tests, so only events can
explain what they see."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import dns.asyncquery
import dns.message
import dns.rcode
from aiobotocore.session import AioSession

from discobridge.app import Daemon
from discobridge.event_queue import HEARTBEAT_TAG
from discobridge.fakeaws.estate import Container, Estate
from discobridge.fakeaws.server import FakeAws
from discobridge.model import Health
from tests import helpers
from tests.conftest import daemon_get, running

FAR = 600.0  # a poll interval no test waits for


async def flowing(daemon: Daemon) -> None:
    """The first snapshot is out, events flow, and the full poll after subscribing is done."""
    assert daemon.events is not None
    assert await daemon.store.wait_for(0, timeout=10) is not None
    assert await daemon.store.wait_until(lambda: daemon.events is not None and daemon.events.status.live_since, 10)
    assert await daemon.store.wait_until(lambda: helpers.reconciled_since_events(daemon.ecs_sources[0]), 10)


@asynccontextmanager
async def flowing_daemon(
    fake_aws: FakeAws,
    aio_session: AioSession,
    topic: str,
    *,
    reconcile_s: float = FAR,
    events_wait_s: int = 20,
    **ecs: Any,
) -> AsyncIterator[Daemon]:
    """A daemon reading cluster prod with events on `topic` and polling far off (unless `ecs`
    says otherwise), once events flow and its full poll after subscribing is done."""
    tables = {
        "ecs": {"clusters": ["prod"], "poll_interval_s": FAR, "health_refresh_s": FAR, **ecs},
        "events": {"topic_arn": topic, "reconcile_s": reconcile_s},
    }
    async with running(fake_aws.url, aio_session, events_wait_s=events_wait_s, **tables) as daemon:
        await flowing(daemon)
        yield daemon


def counted(daemon: Daemon, name: str, **labels: str) -> float:
    return helpers.counted(daemon.metrics.registry, name, **labels)


def endpoints(daemon: Daemon, service: str = "orders") -> list[Any]:
    snapshot = daemon.store.current
    found = snapshot.services.get(service) if snapshot else None
    return list(found.endpoints) if found else []


async def srv_count(daemon: Daemon, service: str = "orders") -> int:
    query = dns.message.make_query(f"_{service}._tcp.{daemon.config.dns.zone}", "SRV")
    reply = await dns.asyncquery.udp(query, "127.0.0.1", port=daemon.dns.addresses[0].port, timeout=2)
    return 0 if reply.rcode() != dns.rcode.NOERROR else sum(len(r) for r in reply.answer)


def orders_definition(estate: Estate) -> str:
    return estate.task_definition("orders", Container("web", ports=(8080,)))


async def test_a_started_and_a_stopped_task_are_served_within_a_second_with_polling_far_off(
    fake_aws: FakeAws, estate: Estate, aio_session: AioSession
) -> None:
    topic = estate.events_topic()
    tasks = estate.web_service("prod", "orders", hosts=2)
    hosts = estate.hosts("prod", 1)
    async with flowing_daemon(fake_aws, aio_session, topic) as daemon:
        assert await srv_count(daemon) == 2
        polls_before = fake_aws.faults.calls.get("ListTasks", 0)

        started = time.monotonic()
        new = estate.place("prod", orders_definition(estate), hosts, group="service:orders")[0]
        assert await daemon.store.wait_until(lambda: len(endpoints(daemon)) == 3, 1.0)
        assert await srv_count(daemon) == 3
        assert any(e.task_arn == new for e in endpoints(daemon))

        estate.stop("prod", tasks[0])
        assert await daemon.store.wait_until(lambda: len(endpoints(daemon)) == 2, 1.0)
        assert await srv_count(daemon) == 2
        assert time.monotonic() - started < 5
        assert fake_aws.faults.calls.get("ListTasks", 0) == polls_before  # no poll explains it
        assert counted(daemon, "discobridge_events_received_total", outcome="applied") >= 2  # RUNNING, then STOPPED
        status, body = await daemon_get(daemon, "/v1/services/orders")
        assert status == 200 and tasks[0] not in body.decode()


async def test_a_stopped_task_is_never_brought_back_by_older_events_delivered_after(
    fake_aws: FakeAws, estate: Estate, aio_session: AioSession
) -> None:
    topic = estate.events_topic()
    estate.web_service("prod", "orders")
    hosts = estate.hosts("prod", 1)
    async with flowing_daemon(fake_aws, aio_session, topic) as daemon:
        with estate.events.held(reverse=True):  # delivered late, newest first: STOPPED, RUNNING, PENDING
            task = estate.place("prod", orders_definition(estate), hosts, group="service:orders")[0]
            estate.stop("prod", task)
        assert await daemon.store.wait_until(
            lambda: counted(daemon, "discobridge_events_received_total", outcome="stale") >= 2, 5
        )
        assert [e.task_arn for e in endpoints(daemon)] != [] and all(e.task_arn != task for e in endpoints(daemon))
        assert len(endpoints(daemon)) == 1


async def test_duplicated_events_change_nothing(fake_aws: FakeAws, estate: Estate, aio_session: AioSession) -> None:
    topic = estate.events_topic()
    tasks = estate.web_service("prod", "orders")
    hosts = estate.hosts("prod", 1)
    async with flowing_daemon(fake_aws, aio_session, topic) as daemon:
        estate.events.duplicate_next(3)  # PENDING, RUNNING and STOPPED, each twice
        new = estate.place("prod", orders_definition(estate), hosts, group="service:orders")[0]
        estate.stop("prod", tasks[0])
        assert await daemon.store.wait_until(
            lambda: counted(daemon, "discobridge_events_received_total", outcome="stale") >= 3, 5
        )
        assert await daemon.store.wait_until(lambda: [e.task_arn for e in endpoints(daemon)] == [new], 5)


async def test_a_dropped_event_is_healed_by_the_next_reconcile_and_counted(
    fake_aws: FakeAws, estate: Estate, aio_session: AioSession
) -> None:
    topic = estate.events_topic()
    estate.web_service("prod", "orders")
    hosts = estate.hosts("prod", 1)
    async with flowing_daemon(fake_aws, aio_session, topic, reconcile_s=1.0, poll_interval_s=0.2) as daemon:
        estate.events.drop_next(2)  # the new task's PENDING and RUNNING events are lost
        estate.place("prod", orders_definition(estate), hosts, group="service:orders")
        assert estate.events.dropped == 2
        assert await daemon.store.wait_until(lambda: len(endpoints(daemon)) == 2, 10)
        missed = {"partition": "ecs/local/us-east-1/prod"}
        assert daemon.metrics.registry.get_sample_value("discobridge_events_missed_total", missed) == 1


async def test_a_drained_host_is_served_as_draining_from_its_event(
    fake_aws: FakeAws, estate: Estate, aio_session: AioSession
) -> None:
    topic = estate.events_topic()
    estate.cluster("prod")
    hosts = estate.hosts("prod", 2)
    estate.service("prod", "orders", orders_definition(estate), hosts)
    async with flowing_daemon(fake_aws, aio_session, topic) as daemon:
        estate.drain("prod", hosts[0])
        assert await daemon.store.wait_until(
            lambda: sorted(e.health for e in endpoints(daemon)) == sorted([Health.DRAINING, Health.HEALTHY]), 2
        ), endpoints(daemon)
        assert await srv_count(daemon) == 1  # a draining task is no longer offered


async def test_a_deleted_queue_falls_back_to_polling_at_once_then_recovers(
    fake_aws: FakeAws, estate: Estate, aio_session: AioSession
) -> None:
    topic = estate.events_topic()
    estate.web_service("prod", "orders")
    hosts = estate.hosts("prod", 2)
    async with flowing_daemon(fake_aws, aio_session, topic, events_wait_s=1, poll_interval_s=0.5) as daemon:
        assert daemon.events is not None
        first = daemon.events.queue_name
        estate.sqs.delete_queue(QueueUrl=estate.sqs.get_queue_url(QueueName=first)["QueueUrl"])
        estate.events.drop_next(2)  # even with its events lost, the change shows: by polling
        estate.place("prod", orders_definition(estate), hosts[:1], group="service:orders")
        assert await daemon.store.wait_until(lambda: len(endpoints(daemon)) == 2, 10)
        status, body = await daemon_get(daemon, "/healthz")
        warnings = json.loads(body)["partitions"]["ecs/local/us-east-1/prod"]["warnings"]
        assert status == 200 and any(w.startswith("ECS events: ReceiveMessage failed") for w in warnings), body

        # The feed makes a new queue (a deleted queue's name is barred for 60 s) and events flow again.
        assert await daemon.store.wait_until(lambda: bool(daemon.events and daemon.events.status.live_since), 30)
        assert daemon.events.queue_name not in ("", first)
        assert await daemon.store.wait_until(lambda: not _warnings(daemon), 5)
        estate.place("prod", orders_definition(estate), hosts[1:], group="service:orders")
        assert await daemon.store.wait_until(lambda: len(endpoints(daemon)) == 3, 5)


def _warnings(daemon: Daemon) -> tuple[str, ...]:
    status = daemon.store.partitions.get(next(iter(daemon.store.partitions)))
    return status.result.warnings if status and status.result else ()


async def test_garbage_messages_are_counted_and_deleted_and_events_keep_flowing(
    fake_aws: FakeAws, estate: Estate, aio_session: AioSession
) -> None:
    topic = estate.events_topic()
    estate.web_service("prod", "orders")
    hosts = estate.hosts("prod", 1)
    async with flowing_daemon(fake_aws, aio_session, topic) as daemon:
        assert daemon.events is not None
        url = estate.sqs.get_queue_url(QueueName=daemon.events.queue_name)["QueueUrl"]
        bad_task = {"source": "aws.ecs", "detail-type": "ECS Task State Change", "region": "us-east-1", "detail": []}
        nested = "[" * 50_000 + "]" * 50_000  # json.loads raises RecursionError, not ValueError
        for body in [
            "not json {",
            json.dumps(bad_task),
            json.dumps({"source": "aws.ec2", "detail": {}}),
            "\x00" * 100,
            nested,
        ]:
            estate.sqs.send_message(QueueUrl=url, MessageBody=body)
        assert await daemon.store.wait_until(
            lambda: (
                counted(daemon, "discobridge_events_received_total", outcome="not_json") == 3
                and counted(daemon, "discobridge_events_received_total", outcome="malformed") == 1
                and counted(daemon, "discobridge_events_received_total", outcome="ignored") == 1
            ),
            5,
        )
        estate.place("prod", orders_definition(estate), hosts, group="service:orders")
        assert await daemon.store.wait_until(lambda: len(endpoints(daemon)) == 2, 2)

        def left() -> tuple[str, str]:
            attributes = estate.sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
            return attributes["ApproximateNumberOfMessages"], attributes["ApproximateNumberOfMessagesNotVisible"]

        assert await daemon.store.wait_until(lambda: left() == ("0", "0"), 5), left()  # deleted, none to come back


async def test_an_orphaned_queue_with_a_stale_heartbeat_is_removed_at_start(
    fake_aws: FakeAws, estate: Estate, aio_session: AioSession
) -> None:
    topic = estate.events_topic()
    estate.web_service("prod", "orders")

    def queue(name: str, heartbeat_age_s: float) -> str:
        url: str = estate.sqs.create_queue(
            QueueName=name, tags={HEARTBEAT_TAG: str(int(time.time() - heartbeat_age_s))}
        )["QueueUrl"]
        arn = estate.sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        estate.sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=arn)
        return arn

    crashed = queue("discobridge-crashed", 2 * 3600)
    alive = queue("discobridge-alive", 60)
    unrelated = estate.sqs.create_queue(QueueName="discobridge-not-ours")["QueueUrl"]  # no heartbeat tag
    async with flowing_daemon(fake_aws, aio_session, topic) as daemon:
        names = {u.rsplit("/", 1)[-1] for u in estate.sqs.list_queues().get("QueueUrls", [])}
        assert daemon.events is not None
        assert names == {"discobridge-alive", "discobridge-not-ours", daemon.events.queue_name}
        subscribed = {s["Endpoint"] for s in estate.sns.list_subscriptions_by_topic(TopicArn=topic)["Subscriptions"]}
        assert crashed not in subscribed and alive in subscribed
    assert unrelated

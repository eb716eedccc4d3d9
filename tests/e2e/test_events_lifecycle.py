"""ECS events with the daemon as a process: every replica gets every event through its own queue,
and SIGTERM takes the queue and its subscription away with it."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
from pathlib import Path

import dns.message
import dns.query

from discobridge.fakeaws.estate import Container, Estate
from discobridge.fakeaws.server import FakeAws
from tests.helpers import daemon_process, events, example_config, read_until


def events_config(tmp_path: Path, endpoint_url: str, topic: str, name: str) -> Path:
    path = example_config(tmp_path / name, endpoint_url)
    text = (
        path.read_text().replace("poll_interval_s = 0.2", "poll_interval_s = 600").replace("drain_s = 5", "drain_s = 0")
    )
    path.write_text(
        text.replace(
            '# topic_arn = "arn:aws:sns:us-east-1:111111111111:discobridge-ecs-events"', f'topic_arn = "{topic}"'
        )
    )
    return path


def srv(port: int) -> int:
    query = dns.message.make_query("_orders._tcp.discobridge.internal", "SRV")
    return sum(len(rrset) for rrset in dns.query.udp(query, "127.0.0.1", port=port, timeout=2).answer)


def test_two_daemons_on_one_topic_both_see_every_event_and_sigterm_leaves_no_queue_or_subscription(
    fake_aws: FakeAws, estate: Estate, tmp_path: Path
) -> None:
    topic = estate.events_topic()
    estate.web_service("prod", "orders")
    hosts = estate.hosts("prod", 2)
    env = {**os.environ, "AWS_EC2_METADATA_DISABLED": "true"}
    with contextlib.ExitStack() as stack:
        daemons: list[tuple[subprocess.Popen[str], int]] = []
        for name in ("a", "b"):
            (tmp_path / name).mkdir()
            config = events_config(tmp_path, fake_aws.url, topic, name)
            process = stack.enter_context(daemon_process(["run", "-c", str(config)], env))
            seen = events(read_until(process.stderr, "events_flowing"))
            port = int(str(seen["dns_listening"]["addresses"][0]).rsplit(":", 1)[1])  # type: ignore[index]
            read_until(process.stderr, "source_refreshed")  # the full poll after subscribing
            daemons.append((process, port))
        queues = estate.sqs.list_queues(QueueNamePrefix="discobridge-").get("QueueUrls", [])
        assert len(queues) == 2
        assert len(estate.sns.list_subscriptions_by_topic(TopicArn=topic)["Subscriptions"]) == 2

        definition = estate.task_definition("orders", Container("web", ports=(8080,)))
        estate.place("prod", definition, hosts, group="service:orders")
        for process, port in daemons:
            read_until(process.stderr, '"endpoints": 3')  # both tasks' events, with polling 600 s away
            assert srv(port) == 3

        for process, _ in daemons:
            process.send_signal(signal.SIGTERM)
        for process, _ in daemons:
            read_until(process.stderr, "events_queue_closed")
            assert process.wait(timeout=15) == 0
    assert estate.sqs.list_queues(QueueNamePrefix="discobridge-").get("QueueUrls", []) == []
    assert estate.sns.list_subscriptions_by_topic(TopicArn=topic)["Subscriptions"] == []

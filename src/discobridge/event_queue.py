"""This replica's own SQS queue on the ECS events topic: made at start, removed at stop.

SQS hands each message to one consumer and the replicas are identical, so each owns a queue
subscribed to the topic with raw delivery (the body is the EventBridge event itself). The queue
carries a heartbeat tag refreshed every few minutes: a replica that crashed leaves a queue whose
heartbeat goes stale, and the next replica to start deletes it with its subscription, so
nothing accumulates. A queue name is never reused: SQS refuses a deleted queue's name for 60 s.
"""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import structlog

from discobridge.aws import AwsCallError, AwsClients

log = structlog.get_logger(__name__)

HEARTBEAT_TAG = "discobridge:heartbeat"
HEARTBEAT_EVERY_S = 300.0
ORPHAN_AFTER_S = 3600.0
WAIT_S = 20  # the longest long poll SQS allows
BATCH = 10  # the most messages one ReceiveMessage returns
# Long enough to apply a batch that needs a few AWS calls; a message not deleted by then (its
# replica failed half-way) comes back. Events older than an hour are healed by reconciling anyway.
VISIBILITY_S = 120
RETENTION_S = 3600
# The errors that mean the queue itself is gone (deleted under us): make a new one.
QUEUE_GONE = frozenset({"AWS.SimpleQueueService.NonExistentQueue", "QueueDoesNotExist", "NonExistentQueue"})


@dataclass(frozen=True, slots=True)
class Message:
    receipt: str
    body: str
    receives: int  # how often SQS has handed this message out, this time included


class EventQueue:
    """One queue's life: `open` (clean up orphans, create, allow the topic, subscribe), then
    `receive` / `delete` / `heartbeat`, then `close` (unsubscribe, delete)."""

    def __init__(
        self,
        *,
        aws: AwsClients,
        topic_arn: str,
        prefix: str,
        wall_clock: Callable[[], float] = time.time,
        wait_s: int = WAIT_S,
    ) -> None:
        self._aws = aws
        self._topic_arn = topic_arn
        self._prefix = prefix
        self._wall_clock = wall_clock  # heartbeats are compared across machines: wall time
        self._wait_s = wait_s  # a shorter long poll notices a deleted queue sooner (tests)
        self.name = f"{prefix}{secrets.token_hex(8)}"
        self.url = ""
        self._subscription = ""

    async def open(self) -> None:
        try:
            await self.remove_orphans()
        except AwsCallError as exc:  # another replica cleaning up at the same time, say: not ours to fix now
            log.warning("events_orphan_cleanup_failed", error=str(exc))
        created = await self._aws.call(
            "sqs",
            "CreateQueue",
            QueueName=self.name,
            Attributes={"VisibilityTimeout": str(VISIBILITY_S), "MessageRetentionPeriod": str(RETENTION_S)},
            tags={HEARTBEAT_TAG: self._now_tag()},
        )
        self.url = created["QueueUrl"]
        arn = await self._queue_arn(self.url)
        policy = {
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Effect": "Allow",
                    "Principal": {"Service": "sns.amazonaws.com"},
                    "Action": "sqs:SendMessage",
                    "Resource": arn,
                    "Condition": {"ArnEquals": {"aws:SourceArn": self._topic_arn}},
                }
            ],
        }
        await self._aws.call("sqs", "SetQueueAttributes", QueueUrl=self.url, Attributes={"Policy": json.dumps(policy)})
        subscribed = await self._aws.call(
            "sns",
            "Subscribe",
            TopicArn=self._topic_arn,
            Protocol="sqs",
            Endpoint=arn,
            Attributes={"RawMessageDelivery": "true"},
            ReturnSubscriptionArn=True,
        )
        self._subscription = subscribed["SubscriptionArn"]
        log.info("events_queue_opened", queue=self.name, topic=self._topic_arn)

    async def receive(self) -> list[Message]:
        """Up to BATCH messages, waiting up to WAIT_S for the first."""
        response = await self._aws.call(
            "sqs",
            "ReceiveMessage",
            attempts=1,  # a failing queue is the feed's to retry: polling takes over at once meanwhile
            QueueUrl=self.url,
            MaxNumberOfMessages=BATCH,
            WaitTimeSeconds=self._wait_s,
            MessageSystemAttributeNames=["ApproximateReceiveCount"],
        )
        return [
            Message(
                str(m.get("ReceiptHandle", "")),
                str(m.get("Body", "")),
                _count(m.get("Attributes", {}).get("ApproximateReceiveCount")),
            )
            for m in response.get("Messages", [])
        ]

    async def delete(self, messages: Sequence[Message]) -> None:
        for start in range(0, len(messages), BATCH):
            entries = [
                {"Id": str(i), "ReceiptHandle": m.receipt} for i, m in enumerate(messages[start : start + BATCH])
            ]
            await self._aws.call("sqs", "DeleteMessageBatch", QueueUrl=self.url, Entries=entries)

    async def heartbeat(self) -> None:
        await self._aws.call("sqs", "TagQueue", QueueUrl=self.url, Tags={HEARTBEAT_TAG: self._now_tag()})

    async def close(self) -> None:
        """Unsubscribe and delete the queue; each step is tried even if the other fails."""
        if self._subscription:
            try:
                await self._aws.call("sns", "Unsubscribe", SubscriptionArn=self._subscription)
            except AwsCallError as exc:
                log.warning("events_unsubscribe_failed", queue=self.name, error=str(exc))
        if self.url:
            try:
                await self._aws.call("sqs", "DeleteQueue", QueueUrl=self.url)
            except AwsCallError as exc:
                if exc.code not in QUEUE_GONE:
                    log.warning("events_queue_delete_failed", queue=self.name, error=str(exc))
        log.info("events_queue_closed", queue=self.name)

    async def remove_orphans(self) -> int:
        """Delete the queues of our prefix (and their subscriptions) whose heartbeat is older
        than ORPHAN_AFTER_S: their replicas are gone. Queues without the tag are not ours."""
        urls = await self._aws.collect("sqs", "ListQueues", "QueueUrls", "NextToken", QueueNamePrefix=self._prefix)
        orphans: dict[str, str] = {}  # queue ARN -> URL
        for url in urls:
            if url == self.url:
                continue
            try:
                tags = (await self._aws.call("sqs", "ListQueueTags", QueueUrl=url)).get("Tags", {})
                beat = _count(tags.get(HEARTBEAT_TAG))  # 0: no tag, or not ours to judge
                if beat and self._wall_clock() - beat > ORPHAN_AFTER_S:
                    orphans[await self._queue_arn(url)] = url
            except AwsCallError as exc:
                if exc.code not in QUEUE_GONE:  # gone already: another replica removed it
                    raise
        if not orphans:
            return 0
        subscriptions = await self._aws.collect(
            "sns", "ListSubscriptionsByTopic", "Subscriptions", "NextToken", TopicArn=self._topic_arn
        )
        for subscription in subscriptions:
            if subscription.get("Endpoint") in orphans and subscription.get("SubscriptionArn", "").startswith("arn:"):
                await self._aws.call("sns", "Unsubscribe", SubscriptionArn=subscription["SubscriptionArn"])
        for url in orphans.values():
            try:
                await self._aws.call("sqs", "DeleteQueue", QueueUrl=url)
            except AwsCallError as exc:
                if exc.code not in QUEUE_GONE:
                    raise
            log.info("events_orphan_queue_removed", queue=url.rsplit("/", 1)[-1])
        return len(orphans)

    async def _queue_arn(self, url: str) -> str:
        answer = await self._aws.call("sqs", "GetQueueAttributes", QueueUrl=url, AttributeNames=["QueueArn"])
        return str(answer["Attributes"]["QueueArn"])

    def _now_tag(self) -> str:
        return str(int(self._wall_clock()))


def _count(value: object) -> int:
    return int(value) if isinstance(value, str) and value.isascii() and value.isdigit() else 0

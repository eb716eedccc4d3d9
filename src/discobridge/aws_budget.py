"""Client-side token buckets that keep discobridge within a share of each AWS throttle bucket.

AWS throttles per account and region, and every tool in the account draws from the same buckets:
discobridge takes a fraction (a quarter by default) so it never starves the console, CI or other
replicas. A throttle answer halves a bucket's rate; each success wins a tenth of it back.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class AwsBucket:
    """One AWS throttle bucket: its burst size, refill per second, and the operations drawing on it."""

    burst: float
    per_s: float
    operations: frozenset[str]


# https://docs.aws.amazon.com/AmazonECS/latest/APIReference/request-throttling.html ;
# EC2: https://docs.aws.amazon.com/ec2/latest/devguide/ec2-api-throttling.html (non-mutating);
# Cloud Map: https://docs.aws.amazon.com/cloud-map/latest/dg/throttling.html (DiscoverInstances).
AWS_BUCKETS: Mapping[str, AwsBucket] = {
    "ecs-cluster-read": AwsBucket(50, 20, frozenset({"ListClusters", "DescribeClusters"})),
    "ecs-cluster-resource-read": AwsBucket(
        100, 20, frozenset({"ListTasks", "DescribeTasks", "ListContainerInstances", "DescribeContainerInstances"})
    ),
    "ecs-task-definition-read": AwsBucket(50, 20, frozenset({"DescribeTaskDefinition"})),
    "ec2-describe": AwsBucket(100, 20, frozenset({"DescribeInstances"})),
    "cloudmap-discover": AwsBucket(2000, 1000, frozenset({"DiscoverInstances"})),
    # AWS publishes no figure for Cloud Map's control plane; these two calls are rare (per poll).
    "cloudmap-read": AwsBucket(20, 5, frozenset({"ListNamespaces", "ListServices"})),
    # S3: 3,500 writes and 5,500 reads per second per prefix; the snapshot costs one per 10 s.
    "s3-object": AwsBucket(3500, 3500, frozenset({"GetObject", "PutObject"})),
    # SQS standard queues have no published API rate limit; one long poll per 20 s is the norm.
    "sqs": AwsBucket(
        3000,
        3000,
        frozenset(
            {
                "CreateQueue",
                "GetQueueAttributes",
                "SetQueueAttributes",
                "TagQueue",
                "ListQueues",
                "ListQueueTags",
                "DeleteQueue",
                "ReceiveMessage",
                "DeleteMessageBatch",
            }
        ),
    ),
    # https://docs.aws.amazon.com/general/latest/gr/sns.html: the lowest of these three is 30/s.
    "sns-subscriptions": AwsBucket(30, 30, frozenset({"Subscribe", "Unsubscribe", "ListSubscriptionsByTopic"})),
    # https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_iam-quotas.html (STS: 600/s).
    # Credential refreshes call AssumeRole inside another call, outside the budget (every 45
    # minutes a role); GetCallerIdentity is called once, when events start.
    "sts": AwsBucket(600, 600, frozenset({"AssumeRole", "GetCallerIdentity"})),
}


def bucket_of(operation: str) -> str:
    return next(name for name, bucket in AWS_BUCKETS.items() if operation in bucket.operations)


class TokenBucket:
    """A token bucket that lends tokens ahead: `reserve` says how long the caller must wait."""

    def __init__(self, *, burst: float, per_s: float, now: float) -> None:
        self._burst = max(1.0, burst)
        self._full_rate = per_s
        self._rate = per_s
        self._tokens = self._burst
        self._updated = now

    @property
    def rate(self) -> float:
        return self._rate

    def reserve(self, now: float) -> float:
        """Take one token; return the seconds to wait before using it (0 when one was there)."""
        self._tokens = min(self._burst, self._tokens + (now - self._updated) * self._rate)
        self._updated = now
        self._tokens -= 1
        return 0.0 if self._tokens >= 0 else -self._tokens / self._rate

    def refund(self) -> None:
        """Give back a token reserved by a call that was cancelled before it used it."""
        self._tokens = min(self._burst, self._tokens + 1)

    def throttled(self) -> None:
        """AWS said slow down: halve the rate, down to an eighth of the share (adaptive)."""
        self._rate = max(self._full_rate / 8, self._rate / 2)

    def succeeded(self) -> None:
        self._rate = min(self._full_rate, self._rate + self._full_rate / 10)

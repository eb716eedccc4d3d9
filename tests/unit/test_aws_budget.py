"""TokenBucket: a burst, then the refill rate; throttles halve the rate, successes win it back."""

from __future__ import annotations

from discobridge.aws import OPERATIONS
from discobridge.aws_budget import AWS_BUCKETS, TokenBucket, bucket_of


def test_burst_then_refill_rate() -> None:
    bucket = TokenBucket(burst=5, per_s=5, now=0.0)
    assert [bucket.reserve(0.0) for _ in range(5)] == [0.0] * 5
    assert bucket.reserve(0.0) == 0.2  # the 6th waits for one token at 5/s
    assert bucket.reserve(0.0) == 0.4  # and the 7th for two
    assert bucket.reserve(10.0) == 0.0  # refilled (capped at the burst)


def test_throttles_halve_the_rate_down_to_an_eighth_and_successes_restore_it() -> None:
    bucket = TokenBucket(burst=1, per_s=8, now=0.0)
    for _ in range(5):
        bucket.throttled()
    assert bucket.rate == 1.0
    for _ in range(20):
        bucket.succeeded()
    assert bucket.rate == 8.0


def test_every_operation_we_call_draws_on_exactly_one_aws_bucket() -> None:
    ours = {op for ops in OPERATIONS.values() for op in ops}
    budgeted = [op for bucket in AWS_BUCKETS.values() for op in bucket.operations]
    assert sorted(budgeted) == sorted(ours)
    assert bucket_of("DescribeTasks") == bucket_of("ListTasks") == "ecs-cluster-resource-read"
    assert (AWS_BUCKETS["ecs-cluster-resource-read"].burst, AWS_BUCKETS["ecs-cluster-resource-read"].per_s) == (100, 20)


def test_a_refunded_token_is_there_for_the_next_caller() -> None:
    bucket = TokenBucket(burst=1, per_s=1, now=0.0)
    assert bucket.reserve(0.0) == 0.0
    assert bucket.reserve(0.0) == 1.0  # this caller is cancelled while it waits...
    bucket.refund()
    assert bucket.reserve(0.0) == 1.0  # ...so the next waits one token, not two

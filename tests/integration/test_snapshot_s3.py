"""The snapshot shared in S3 by every replica, against moto's S3 over HTTP: conditional puts that
merge instead of overwriting, and a new replica answering at once from another's snapshot."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import pytest
from aiobotocore.session import AioSession

from discobridge.app import Daemon
from discobridge.aws import AwsClients
from discobridge.fakeaws.estate import Estate
from discobridge.fakeaws.server import FakeAws
from discobridge.metrics import Metrics
from discobridge.model import PartitionResult
from discobridge.snapshot_file import Saved, decode
from discobridge.snapshot_s3 import S3Snapshot
from tests.conftest import daemon_get, make_config
from tests.helpers import LOCAL_AWS, PROD, endpoint, partition

URL = "s3://discobridge-test/replicas/snapshot.json"


@pytest.fixture
def bucket(estate: Estate) -> str:
    estate.bucket("discobridge-test")
    return URL


@pytest.fixture
async def s3(fake_aws: FakeAws, aio_session: AioSession) -> AsyncIterator[AwsClients]:
    config = make_config(fake_aws.url)
    async with AwsClients(
        config=config.aws, metrics=Metrics.create(), session=aio_session, max_attempts=1, services=["s3"]
    ) as clients:
        yield clients


async def test_a_conflicting_put_merges_with_the_other_replicas_document(bucket: str, s3: AwsClients) -> None:
    first, second = S3Snapshot(aws=s3, url=bucket), S3Snapshot(aws=s3, url=bucket)
    other = partition("other")
    assert await second.read() is None  # no object yet
    await first.write(Saved({PROD: PartitionResult((endpoint("orders", 1),), 10.0)}))
    assert await second.read() is not None  # second now holds that version's ETag
    await first.write(Saved({PROD: PartitionResult((endpoint("orders", 2),), 20.0)}, {"ecs": {"a": {"x": 1}}}))
    # second writes on top of a version that is gone: the put is refused, the documents merged.
    await second.write(
        Saved({PROD: PartitionResult((), 15.0), other: PartitionResult((), 30.0)}, {"ecs": {"a": {"y": 2}}})
    )
    data = await first.read()
    assert data is not None
    merged = decode(data, origin=bucket)
    fresher = {key: [e.host_port for e in result.endpoints] for key, result in merged.partitions.items()}
    assert fresher == {PROD: [32770], other: []}  # PROD from first (20 > 15), other from second
    assert merged.caches == {"ecs": {"a": {"x": 1, "y": 2}}}
    calls = s3._metrics.registry.get_sample_value
    assert (
        calls("discobridge_aws_calls_total", {**LOCAL_AWS, "operation": "PutObject", "outcome": "PreconditionFailed"})
        == 1
    )


async def test_a_new_replica_answers_at_once_from_the_shared_snapshot(
    bucket: str, fake_aws: FakeAws, estate: Estate, aio_session: AioSession
) -> None:
    estate.web_service("prod", "orders", hosts=2)
    config = make_config(fake_aws.url, snapshot={"path": bucket}, ecs={"clusters": ["prod"]})
    options = {"max_attempts": 1, "read_timeout_s": 5.0}
    async with Daemon(config, session=aio_session, aws_options=options, snapshot_interval_s=0.1) as first:
        await first.serve()
        assert await first.store.wait_until(lambda: first.saver is not None and first.saver.written >= 1, 10)
        fake_aws.faults.delay("ListTasks", 2.0, times=1)  # the new replica's own first poll is slow
        async with Daemon(config, session=aio_session, aws_options=options, snapshot_interval_s=0.1) as second:
            await second.serve()
            assert second.store.current is not None  # served from S3 before its own poll
            status, body = await daemon_get(second, "/v1/services/orders")
            assert status == 200 and len(json.loads(body)["endpoints"]) == 2
            status, body = await daemon_get(second, "/healthz")
            assert status == 200 and json.loads(body)["age_s"] > 0  # data of known age
            # Both keep writing the one object; neither fails on the other's writes.
            target = (first.saver.written + 2) if first.saver else 0
            assert await first.store.wait_until(lambda: first.saver is not None and first.saver.written >= target, 10)
            assert await second.store.wait_until(lambda: second.saver is not None and second.saver.written >= 2, 10)


async def test_an_object_deleted_under_a_writer_is_written_again(bucket: str, s3: AwsClients, estate: Estate) -> None:
    writer = S3Snapshot(aws=s3, url=bucket)
    await writer.write(Saved({PROD: PartitionResult((endpoint("orders", 1),), 10.0)}))
    estate.s3.delete_object(Bucket="discobridge-test", Key="replicas/snapshot.json")
    await writer.write(Saved({PROD: PartitionResult((endpoint("orders", 2),), 20.0)}))
    data = await S3Snapshot(aws=s3, url=bucket).read()
    assert data is not None and b"32770" in data

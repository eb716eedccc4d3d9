"""snapshot_file: a round trip that dates data by its last good refresh, atomic writes that leave
no temp file, merging two replicas' documents, and damaged files read as nothing."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from discobridge.model import Health, PartitionResult
from discobridge.snapshot_file import Saved, decode, encode, merge, read_file, write_file
from tests.helpers import PROD, endpoint, partition

ENDPOINT = endpoint(
    "orders", 1, health=Health.DRAINING, container_instance="arn:ci", instance_id="i-0abc", ports=(("metrics", 9102),)
)
STAGING = partition("staging")


def test_round_trip_keeps_every_field_the_caches_and_the_age(tmp_path: Path) -> None:
    path = tmp_path / "state" / "snapshot.json"
    saved = Saved(
        {PROD: PartitionResult((ENDPOINT,), 95.0, ("a warning",)), STAGING: PartitionResult((), 60.0)},
        {"ecs": {"task_definitions": {"arn:td": {"family": "orders"}}}},
    )
    write_file(path, encode(saved, clock=lambda: 100.0, wall_clock=lambda: 5000.0))
    assert [p.name for p in path.parent.iterdir()] == ["snapshot.json"]  # no temp file left behind
    data = read_file(path)
    assert data is not None
    loaded = decode(data, origin=str(path), clock=lambda: 10.0, wall_clock=lambda: 5030.0)
    # Refreshed 5 s and 40 s before the write, read 30 s after it: 35 s and 70 s old.
    assert loaded.partitions == {
        PROD: PartitionResult((ENDPOINT,), -25.0, ("a warning",)),
        STAGING: PartitionResult((), -60.0),
    }
    assert loaded.caches == saved.caches


def test_a_failed_write_removes_its_temp_file(tmp_path: Path) -> None:
    target = tmp_path / "snapshot.json"
    target.mkdir()  # os.replace onto a directory fails after the temp file was written
    try:
        write_file(target, b"{}")
    except OSError:
        pass
    else:
        raise AssertionError("writing over a directory must fail")
    assert [p.name for p in tmp_path.iterdir()] == ["snapshot.json"]


def test_missing_or_damaged_files_read_as_nothing_and_a_damaged_partition_is_dropped_whole(tmp_path: Path) -> None:
    assert read_file(tmp_path / "absent.json") is None
    good = json.loads(encode(Saved({PROD: PartitionResult((ENDPOINT,), 1.0)}), clock=lambda: 1.0))
    broken = {**good["partitions"][0], "name": "staging", "endpoints": [{"service": "x"}]}
    document = {**good, "partitions": [good["partitions"][0], broken]}
    with capture_logs() as logs:
        loaded = decode(json.dumps(document).encode(), origin="t", clock=lambda: 1.0)
    assert list(loaded.partitions) == [PROD]
    assert logs[0]["event"] == "snapshot_file_records_skipped"
    for garbage in (b"not json", b"[]", b'{"format":1,"sources":[]}', b"[" * 100_000 + b"]" * 100_000):
        with capture_logs() as logs:
            assert decode(garbage, origin="t") == Saved()
        assert logs[0]["event"] == "snapshot_file_unreadable"


def test_merge_keeps_the_fresher_result_of_each_partition() -> None:
    ours = Saved(
        {PROD: PartitionResult((ENDPOINT,), 10.0), STAGING: PartitionResult((), 1.0)}, {"ecs": {"a": {"x": 1}}}
    )
    theirs = Saved({STAGING: PartitionResult((ENDPOINT,), 5.0)}, {"ecs": {"a": {"y": 2}}})
    merged = merge(ours, theirs)
    assert merged.partitions == {PROD: ours.partitions[PROD], STAGING: theirs.partitions[STAGING]}
    assert merged.caches == {"ecs": {"a": {"x": 1, "y": 2}}}


def test_merge_drops_what_we_no_longer_have_but_keeps_a_scope_we_do_not_serve() -> None:
    elsewhere = partition("prod", region="eu-west-1")
    ours = Saved({PROD: PartitionResult((ENDPOINT,), 10.0)})
    theirs = Saved({STAGING: PartitionResult((), 50.0), elsewhere: PartitionResult((), 50.0)})
    assert set(merge(ours, theirs).partitions) == {PROD, elsewhere}  # staging was deleted since


@pytest.mark.parametrize("when", ["NaN", "Infinity", "1e30"], ids=["nan", "infinite", "future"])
def test_a_partition_of_unknown_age_is_not_restored(when: str) -> None:
    document = encode(Saved({PROD: PartitionResult((ENDPOINT,), 1.0)}), clock=lambda: 1.0, wall_clock=lambda: 100.0)
    parsed = json.loads(document)
    parsed["partitions"][0]["refreshed_at"] = "@"
    damaged = json.dumps(parsed).replace('"@"', when).encode()
    assert decode(damaged, origin="t", clock=lambda: 1.0, wall_clock=lambda: 100.0).partitions == {}


def test_a_file_written_before_endpoints_named_their_account_loads_them_as_their_partitions() -> None:
    saved = Saved({PROD: PartitionResult((ENDPOINT,), 95.0)}, {})
    document = json.loads(encode(saved, clock=lambda: 100.0, wall_clock=lambda: 5000.0))
    for partition_data in document["partitions"]:
        for endpoint_data in partition_data["endpoints"]:
            del endpoint_data["account"], endpoint_data["region"]
    loaded = decode(json.dumps(document).encode(), origin="old", clock=lambda: 100.0, wall_clock=lambda: 5000.0)
    assert loaded.partitions[PROD].endpoints == (ENDPOINT,)

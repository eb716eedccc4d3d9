"""snapshot_file: an atomic save and a load that dates the data as old as the file says."""

from __future__ import annotations

from pathlib import Path

from structlog.testing import capture_logs

from discobridge import snapshot_file
from discobridge.model import Endpoint, Health, SourceName, SourceResult

ENDPOINT = Endpoint(
    "orders", "10.0.1.4", 32768, Health.DRAINING, "us-east-1a", SourceName.ECS,
    cluster="prod", task_arn="arn:aws:ecs:us-east-1:1:task/prod/abc", container="web",
    container_instance="arn:ci", instance_id="i-0abc",
)  # fmt: skip


def test_round_trip_keeps_every_field_and_the_age(tmp_path: Path) -> None:
    path = tmp_path / "state" / "snapshot.json"
    results = [SourceResult(SourceName.ECS, (ENDPOINT,), 1.0), SourceResult(SourceName.CLOUDMAP, (), 1.0)]
    snapshot_file.save(path, results, wall_clock=lambda: 5000.0)
    assert [p.name for p in path.parent.iterdir()] == ["snapshot.json"]  # no temp file left behind
    loaded = snapshot_file.load(path, clock=lambda: 100.0, wall_clock=lambda: 5030.0)
    assert [(r.source, r.endpoints, r.fetched_at) for r in loaded] == [
        (SourceName.ECS, (ENDPOINT,), 70.0),  # written 30 s ago: as stale as that
        (SourceName.CLOUDMAP, (), 70.0),
    ]


def test_missing_or_damaged_files_load_as_nothing(tmp_path: Path) -> None:
    assert snapshot_file.load(tmp_path / "absent.json", clock=lambda: 0.0) == []
    damaged = tmp_path / "damaged.json"
    damaged.write_text('{"format": 1, "written_at": 1, "sources": {"ecs": [{"service": "x"}]}}')
    with capture_logs() as logs:
        assert snapshot_file.load(damaged, clock=lambda: 0.0) == []
    assert logs[0]["event"] == "snapshot_file_unreadable" and logs[0]["log_level"] == "warning"
    damaged.write_text("not json")
    assert snapshot_file.load(damaged, clock=lambda: 0.0) == []

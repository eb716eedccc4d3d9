"""The last good snapshot on disk: written atomically after each change, read at start, so a
restarted replica answers at once (marked stale) instead of SERVFAIL until its first poll."""

from __future__ import annotations

import json
import os
import tempfile
import time
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import structlog

from discobridge.model import Endpoint, Health, SourceName, SourceResult

log = structlog.get_logger(__name__)
FORMAT = 1


def save(path: Path, results: Iterable[SourceResult], wall_clock: Callable[[], float] = time.time) -> None:
    """Write every source's last good endpoints to `path` atomically (temp file, fsync, rename)."""
    document = {
        "format": FORMAT,
        "written_at": wall_clock(),
        "sources": {str(r.source): [_endpoint(e) for e in r.endpoints] for r in results},
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile("w", dir=path.parent, prefix=f".{path.name}.", delete=False) as handle:
        json.dump(document, handle, separators=(",", ":"))
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(handle.name, path)


def load(path: Path, *, clock: Callable[[], float], wall_clock: Callable[[], float] = time.time) -> list[SourceResult]:
    """The saved results, dated as old as the file says (on `clock`); [] if absent or unreadable."""
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
        if document.get("format") != FORMAT:
            raise ValueError(f"unknown format {document.get('format')!r}")
        age_s = max(0.0, wall_clock() - float(document["written_at"]))
        fetched_at = clock() - age_s
        return [
            SourceResult(SourceName(source), tuple(_parse(e) for e in endpoints), fetched_at)
            for source, endpoints in document["sources"].items()
        ]
    except FileNotFoundError:
        return []
    except (OSError, ValueError, KeyError, TypeError) as exc:
        # A damaged file must not stop the daemon: it starts empty and polls, as without one.
        log.warning("snapshot_file_unreadable", path=str(path), error=str(exc))
        return []


def _endpoint(endpoint: Endpoint) -> dict[str, Any]:
    return {
        "service": endpoint.service,
        "host_ip": endpoint.host_ip,
        "host_port": endpoint.host_port,
        "health": str(endpoint.health),
        "az": endpoint.az,
        "source": str(endpoint.source),
        "cluster": endpoint.cluster,
        "task_arn": endpoint.task_arn,
        "container": endpoint.container,
        "container_instance": endpoint.container_instance,
        "instance_id": endpoint.instance_id,
    }


def _parse(raw: Mapping[str, Any]) -> Endpoint:
    return Endpoint(
        service=str(raw["service"]),
        host_ip=str(raw["host_ip"]),
        host_port=int(raw["host_port"]),
        health=Health(raw["health"]),
        az=str(raw["az"]),
        source=SourceName(raw["source"]),
        cluster=str(raw["cluster"]),
        task_arn=str(raw["task_arn"]),
        container=str(raw["container"]),
        container_instance=str(raw["container_instance"]),
        instance_id=str(raw["instance_id"]),
    )

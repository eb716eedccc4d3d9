"""The snapshot file: every partition's last good result with the time AWS last confirmed it,
and the sources' caches of immutable facts, so a restarted replica answers at once (with data of
known age) and describes nothing it already knew.

The document is JSON; times in it are wall-clock seconds, turned to and from the store's
monotonic clock when written and read. A file of the wrong shape is logged and ignored, never
fatal; a record of the wrong shape is skipped. Local files are written atomically (temp file,
fsync, rename) and a failed write leaves no temp file behind.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import os
import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import structlog

from discobridge.model import Endpoint, Health, PartitionKey, PartitionResult, make_endpoint

log = structlog.get_logger(__name__)
FORMAT = 2
_IDENTITY = ("account", "region")
_ENDPOINT_TEXT = ("service", "host_ip", "az", "source", "cluster", "task_arn", "container", "container_instance",
                  "instance_id")  # fmt: skip
_KEY_TEXT = ("source", "account", "region", "unit", "name")
_CLOCK_SKEW_S = 60.0  # how far in the future a replica's clock may be before its dates mean nothing


@dataclass(frozen=True, slots=True)
class Saved:
    """What a snapshot file holds, on the reader's clock."""

    partitions: dict[PartitionKey, PartitionResult] = field(default_factory=dict)
    caches: dict[str, Any] = field(default_factory=dict)


# Endpoints per json.dumps call: each call holds the interpreter until it returns, so a large
# estate is written in short steps, never one long one that DNS and HTTP would wait behind.
_ENCODE_CHUNK = 256


def encode(
    saved: Saved, *, clock: Callable[[], float] = time.monotonic, wall_clock: Callable[[], float] = time.time
) -> bytes:
    """The document for `saved`, its times turned to wall-clock seconds."""
    offset = wall_clock() - clock()
    chunks = [
        b'{"format":%d,"written_at":%s,"caches":' % (FORMAT, json.dumps(wall_clock()).encode()),
        json.dumps(saved.caches, separators=(",", ":")).encode(),
        b',"partitions":[',
    ]
    for index, (key, result) in enumerate(sorted(saved.partitions.items())):
        head = {
            **{name: getattr(key, name) for name in _KEY_TEXT},
            "refreshed_at": result.refreshed_at + offset,
            "warnings": list(result.warnings),
        }
        chunks.append((b"," if index else b"") + json.dumps(head, separators=(",", ":")).encode()[:-1])
        chunks.append(b',"endpoints":[')
        endpoints = result.endpoints
        for start in range(0, len(endpoints), _ENCODE_CHUNK):
            batch = [_endpoint(e) for e in endpoints[start : start + _ENCODE_CHUNK]]
            chunks.append((b"," if start else b"") + json.dumps(batch, separators=(",", ":")).encode()[1:-1])
        chunks.append(b"]}")
    chunks.append(b"]}")
    return b"".join(chunks)


def decode(
    data: bytes,
    *,
    origin: str,
    clock: Callable[[], float] = time.monotonic,
    wall_clock: Callable[[], float] = time.time,
) -> Saved:
    """Read a document written by encode(); an unusable one is logged and read as empty."""
    try:
        document = json.loads(data)
        if not isinstance(document, dict) or document.get("format") != FORMAT:
            raise ValueError(f"not a discobridge snapshot of format {FORMAT}")
        partitions = document.get("partitions")
        if not isinstance(partitions, list):
            raise ValueError("no list of partitions")
    except (ValueError, RecursionError, UnicodeDecodeError) as exc:
        log.warning("snapshot_file_unreadable", path=origin, error=str(exc)[:200])
        return Saved()
    offset = clock() - wall_clock()
    now = clock()
    read: dict[PartitionKey, PartitionResult] = {}
    skipped = 0
    for raw in partitions:
        parsed = _partition(raw, offset, now)
        if parsed is None:
            skipped += 1
        else:
            read[parsed[0]] = parsed[1]
    if skipped:
        log.warning("snapshot_file_records_skipped", path=origin, partitions=skipped)
    caches = document.get("caches")
    return Saved(read, caches if isinstance(caches, dict) else {})


def merge(ours: Saved, theirs: Saved) -> Saved:
    """Two replicas' files as one: per partition the fresher result, the union of the caches.
    Our partitions are the ones that exist: theirs that we no longer have (a cluster deleted
    since) are dropped, unless they are of a scope we do not serve at all (another config)."""
    scopes = {key.scope for key in ours.partitions}
    partitions = {key: result for key, result in theirs.partitions.items() if key.scope not in scopes}
    for key, result in ours.partitions.items():
        other = theirs.partitions.get(key)
        partitions[key] = other if other is not None and other.refreshed_at > result.refreshed_at else result
    caches: dict[str, Any] = {**theirs.caches}
    for name, cache in ours.caches.items():
        mine, other = cache, caches.get(name)
        caches[name] = _union(other, mine) if isinstance(other, dict) and isinstance(mine, dict) else mine
    return Saved(partitions, caches)


def _union(theirs: dict[str, Any], ours: dict[str, Any]) -> dict[str, Any]:
    out = dict(theirs)
    for k, v in ours.items():
        out[k] = _union(out[k], v) if isinstance(out.get(k), dict) and isinstance(v, dict) else v
    return out


def read_file(path: Path) -> bytes | None:
    """The file's bytes; None if it does not exist or cannot be read (logged)."""
    try:
        return path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as exc:
        log.warning("snapshot_file_unreadable", path=str(path), error=str(exc))
        return None


def write_file(path: Path, data: bytes) -> None:
    """Write `data` to `path` atomically: a temp file beside it, fsync, rename. A failed write
    removes its temp file (a full disk must not fill up with leftovers)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle = tempfile.NamedTemporaryFile("wb", dir=path.parent, prefix=f".{path.name}.", delete=False)  # noqa: SIM115
    try:
        with handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(handle.name, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(handle.name)
        raise


def _endpoint(endpoint: Endpoint) -> dict[str, Any]:
    fields = {name: getattr(endpoint, name) for name in (*_ENDPOINT_TEXT, *_IDENTITY)}
    named = {"ports": dict(endpoint.ports)} if endpoint.ports else {}
    return {**fields, "host_port": endpoint.host_port, "health": str(endpoint.health), **named}


def _partition(raw: Any, offset: float, now: float) -> tuple[PartitionKey, PartitionResult] | None:
    if not isinstance(raw, Mapping) or not all(isinstance(raw.get(k), str) and raw.get(k) for k in _KEY_TEXT):
        return None
    refreshed_at, warnings, endpoints = raw.get("refreshed_at"), raw.get("warnings"), raw.get("endpoints")
    if not isinstance(refreshed_at, int | float) or isinstance(refreshed_at, bool) or not math.isfinite(refreshed_at):
        return None
    if refreshed_at + offset > now + _CLOCK_SKEW_S:
        return None  # refreshed in the future: its age is unknown, so it is not served as fresh
    if not isinstance(warnings, list) or not all(isinstance(w, str) for w in warnings):
        return None
    if not isinstance(endpoints, list):
        return None
    key = PartitionKey(**{k: raw[k] for k in _KEY_TEXT})
    parsed = [_parse_endpoint(e, key) for e in endpoints]
    if any(e is None for e in parsed):
        return None  # a damaged partition is dropped whole: no partial data is served
    # Never in the future: a clock that went back a little must not make old data look fresh.
    result = PartitionResult(
        tuple(e for e in parsed if e is not None), min(now, refreshed_at + offset), tuple(warnings)
    )
    return key, result


def _parse_endpoint(raw: Any, key: PartitionKey) -> Endpoint | None:
    if not isinstance(raw, Mapping) or not all(isinstance(raw.get(k), str) for k in _ENDPOINT_TEXT):
        return None
    # Absent from files written before they were kept: every endpoint is its partition's.
    identity = {k: raw.get(k, getattr(key, k)) for k in _IDENTITY}
    if not all(isinstance(v, str) for v in identity.values()):
        return None
    health = raw.get("health")
    if health not in _HEALTH:
        return None
    # The same checks as data from AWS: a file is data too.
    ports = raw.get("ports", {})
    if not isinstance(ports, Mapping):
        return None
    endpoint = make_endpoint(
        **{k: raw[k] for k in _ENDPOINT_TEXT},
        **identity,
        host_port=raw.get("host_port"),
        health=Health(health),
        ports=ports.items(),
    )
    return endpoint if isinstance(endpoint, Endpoint) else None


_HEALTH = frozenset(h.value for h in Health)


class LocalSnapshot:
    """The snapshot file on a local disk (disk I/O runs in a worker thread)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.name = str(path)

    async def read(self) -> bytes | None:
        return await asyncio.to_thread(read_file, self.path)

    async def write(self, saved: Saved) -> None:
        await asyncio.to_thread(lambda: write_file(self.path, encode(saved)))

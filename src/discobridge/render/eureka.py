"""Services -> the Eureka registry: documents in JSON and XML (plain and gzip) once per snapshot,
and the queue of recent changes that `apps/delta` serves, as the real Eureka server keeps it.

The registry's bytes are kept once. An application whose service did not change is copied as
one slice from the previous snapshot's document; in a changed one, only changed instances are
encoded again. No second copy of every instance is held, and a change to one task costs one
application's work plus copying and compressing the document.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, replace
from types import MappingProxyType

from discobridge.model import Endpoint, Service
from discobridge.render import ViewKey
from discobridge.render.eureka_wire import (
    Block,
    Buffer,
    Compressed,
    EurekaPaths,
    Piece,
    Representations,
    application_block,
    assemble_json,
    compressed_registry,
    encode_instance,
    reconcile_hash,
    registry,
    render_instance,
    with_action,
)

RETENTION_S = 180.0  # the real server keeps recently changed instances 3 minutes
# A burst of changes beyond this is cut short: clients whose delta then misses something see
# apps__hashcode disagree and fetch the whole registry, as they would from the real server.
MAX_CHANGES = 20_000


@dataclass(frozen=True, slots=True)
class Instance:
    """One served instance: what lookups and the next snapshot need (its bytes live in the
    registry document, located by its application's Block)."""

    instance_id: str
    app: str
    status: str
    first_seen_ms: int
    endpoint: Endpoint


@dataclass(frozen=True, slots=True)
class Change:
    at: float  # wall-clock seconds
    action: str  # ADDED, MODIFIED or DELETED
    app: str
    instance_id: str
    piece: Piece  # the instance as served then, with this actionType


@dataclass(frozen=True, slots=True)
class EurekaDocuments:
    version: int  # versions__delta: bumped with every snapshot
    hashcode: str  # apps__hashcode of the full registry
    apps: Representations
    delta: Representations
    changes: tuple[Change, ...]  # what `delta` holds, oldest first
    applications: Mapping[str, tuple[Instance, ...]]  # by upper-case app name
    blocks: Mapping[str, Block]  # where each application lies in `apps`
    services: Mapping[str, Service]  # what each application was rendered from
    # Services whose endpoints come from more than one cluster: one Eureka app to a client.
    warnings: tuple[str, ...] = ()

    def pieces(self, instances: Iterable[Instance]) -> list[Piece]:
        """The encoded instances (actionType ADDED): JSON as slices of the registry document,
        XML out of their application's compressed block."""
        as_json = memoryview(self.apps.json)
        xml_of: dict[str, memoryview] = {}
        found: list[Piece] = []
        for instance in instances:
            block = self.blocks[instance.app]
            if instance.app not in xml_of:
                xml_of[instance.app] = memoryview(block.compressed.xml.plain())
            j, jn, x, xn = block.locations[instance.instance_id]
            found.append((as_json[block.json_at + j : block.json_at + j + jn], xml_of[instance.app][x : x + xn]))
        return found

    def block_bytes(self, app: str) -> tuple[Buffer, Buffer]:
        """One application's JSON and XML (as served in the registry)."""
        block = self.blocks[app]
        return memoryview(self.apps.json)[block.json_at : block.json_at + block.json_len], block.compressed.xml.plain()


EUREKA: ViewKey[EurekaDocuments] = ViewKey("eureka")


@dataclass
class _Application:
    """One application while a snapshot is rendered."""

    instances: tuple[Instance, ...]
    json: Buffer
    locations: Mapping[str, tuple[int, int, int, int]]
    compressed: Compressed


class EurekaRenderer:
    """Renders the registry, comparing with the previous snapshot's to queue what changed."""

    key = EUREKA

    def __init__(self, *, paths: EurekaPaths | None = None, wall_clock: Callable[[], float] = time.time) -> None:
        self._paths = paths or EurekaPaths()
        self._wall_clock = wall_clock

    def __call__(
        self, services: Mapping[str, Service], generation: int, previous: EurekaDocuments | None
    ) -> EurekaDocuments:
        now = self._wall_clock()
        changes = list(previous.changes) if previous else []
        applications: dict[str, _Application] = {}
        for name, service in sorted(services.items()):
            app = name.upper()
            if previous is not None and previous.services.get(name) is service:
                block = previous.blocks[app]  # nothing in it changed: its bytes and compressed forms too
                json_block = memoryview(previous.apps.json)[block.json_at : block.json_at + block.json_len]
                applications[app] = _Application(
                    previous.applications[app], json_block, block.locations, block.compressed
                )
            else:
                applications[app] = self._application(name, service, previous, now, changes)
        if previous is not None:
            for app in previous.applications.keys() - applications.keys():
                gone = zip(previous.applications[app], previous.pieces(previous.applications[app]), strict=True)
                changes += [Change(now, "DELETED", app, i.instance_id, with_action(p, "DELETED")) for i, p in gone]
        # The first snapshot is the initial load, not a change: no client can hold an older
        # registry from this process, and a delta of every instance would only cost bytes.
        return documents(generation, applications, services, _recent(changes, now), now)

    def _application(
        self, name: str, service: Service, previous: EurekaDocuments | None, now: float, changes: list[Change]
    ) -> _Application:
        """A changed application: unchanged instances keep their bytes, the others are encoded."""
        app = name.upper()
        known_row = previous.applications.get(app, ()) if previous else ()
        known_pieces = previous.pieces(known_row) if previous else []
        known = {i.instance_id: (i, p) for i, p in zip(known_row, known_pieces, strict=True)}
        instances: list[Instance] = []
        pieces: list[tuple[str, Piece]] = []
        for endpoint, instance_id in zip(service.endpoints, instance_ids(service), strict=True):
            before = known.pop(instance_id, None)
            instance, piece = self._instance(name, endpoint, instance_id, before, now)
            if previous is not None and (before is None or piece is not before[1]):
                action = "MODIFIED" if before is not None else "ADDED"
                changes.append(Change(now, action, app, instance.instance_id, with_action(piece, action)))
            instances.append(instance)
            pieces.append((instance.instance_id, piece))
        for old, piece in known.values():  # instances no longer in the service
            changes.append(Change(now, "DELETED", app, old.instance_id, with_action(piece, "DELETED")))
        as_json, as_xml, locations = application_block(app, pieces)
        return _Application(tuple(instances), as_json, MappingProxyType(locations), Compressed.of(as_json, as_xml))

    def _instance(
        self, name: str, endpoint: Endpoint, instance_id: str, known: tuple[Instance, Piece] | None, now: float
    ) -> tuple[Instance, Piece]:
        """The instance for `endpoint` and its encoding: the known one when nothing served changed."""
        if known is not None and (known[0].endpoint is endpoint or _visible(known[0].endpoint) == _visible(endpoint)):
            instance = known[0] if known[0].endpoint is endpoint else replace(known[0], endpoint=endpoint)
            return instance, known[1]  # the same bytes, the same timestamps
        now_ms = int(now * 1000)
        first_seen = known[0].first_seen_ms if known else now_ms
        rendered = render_instance(name, endpoint, instance_id, self._paths, first_seen, now_ms)
        instance = Instance(instance_id, name.upper(), rendered["status"], first_seen, endpoint)
        return instance, encode_instance(rendered, "ADDED")


def _visible(endpoint: Endpoint) -> tuple[object, ...]:
    """The endpoint's fields that an instance shows: equal ones render equal instances."""
    e = endpoint
    return (e.service, e.host_ip, e.host_port, e.health, e.az, e.source, e.cluster, e.task_arn, e.account, e.region,
            e.ports)  # fmt: skip


def instance_ids(service: Service) -> list[str]:
    """Each endpoint's instanceId: its host:port, which clients show and log; where two accounts
    or regions have an endpoint at one address (overlapping VPC CIDRs), "host:port@account.region"
    for those, as an instanceId must be unique in its application."""
    counts = Counter(e.address for e in service.endpoints)
    return [e.address if counts[e.address] == 1 else f"{e.address}@{e.account}.{e.region}" for e in service.endpoints]


def _recent(changes: list[Change], now: float) -> tuple[Change, ...]:
    kept = [c for c in changes if c.at >= now - RETENTION_S]
    return tuple(kept[-MAX_CHANGES:])


def documents(
    version: int,
    applications: Mapping[str, _Application],
    services: Mapping[str, Service],
    changes: tuple[Change, ...],
    now: float,
) -> EurekaDocuments:
    """The full registry and the delta of `changes` still within the retention window at `now`."""
    statuses: Counter[str] = Counter(i.status for a in applications.values() for i in a.instances)
    hashcode = reconcile_hash(statuses.elements())
    as_json, starts = assemble_json(version, hashcode, [a.json for a in applications.values()])
    blocks = {
        app: Block(at, len(a.json), a.locations, a.compressed)
        for (app, a), at in zip(applications.items(), starts, strict=True)
    }
    apps = compressed_registry(version, hashcode, as_json, [(a.json, a.compressed) for a in applications.values()])
    return EurekaDocuments(
        version=version,
        hashcode=hashcode,
        apps=apps,
        delta=delta(version, hashcode, changes, now),
        changes=changes,
        applications=MappingProxyType({app: a.instances for app, a in applications.items()}),
        blocks=MappingProxyType(blocks),
        services=MappingProxyType(dict(services)),
        warnings=tuple(
            f"service {name} spans clusters {', '.join(s.clusters)}: one Eureka app {name.upper()} to Spring "
            "clients, so each gets the others' instances; scope [ecs] clusters per environment"
            for name, s in sorted(services.items())
            if len(s.clusters) > 1
        ),
    )


def empty_documents(now: float) -> EurekaDocuments:
    """The registry before the first snapshot: empty, never an error."""
    return documents(0, {}, {}, (), now)


def delta(version: int, hashcode: str, changes: Iterable[Change], now: float) -> Representations:
    """apps/delta: each instance changed within the retention window once, with its last action
    (as the real server's delta holds it), grouped by application, with the full registry's hash."""
    last: dict[tuple[str, str], Change] = {}
    for change in changes:
        if change.at >= now - RETENTION_S:
            last.pop((change.app, change.instance_id), None)
            last[change.app, change.instance_id] = change
    grouped: dict[str, list[Piece]] = {}
    for (app, _), change in last.items():
        grouped.setdefault(app, []).append(change.piece)
    return registry(version, hashcode, sorted(grouped.items()))

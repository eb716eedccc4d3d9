"""Services -> the Eureka registry: documents in JSON and XML (plain and gzip) once per snapshot,
and the queue of recent changes that `apps/delta` serves, as the real Eureka server keeps it.

The wire rules come from real clients (py-eureka-client, eureka-js-client, Netflix and Spring
decoders): lists are always arrays, no instance keys beyond the standard ones, `port` holds only
`$` and `@enabled`, extra facts go into `metadata` as flat strings, and `apps__hashcode` counts
every served instance by status.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import time
from collections import Counter, deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any
from xml.sax.saxutils import escape, quoteattr

from discobridge.model import Endpoint, Health, Service

RETENTION_S = 180.0  # the real server keeps recently changed instances 3 minutes
_STATUS = {Health.HEALTHY: "UP", Health.UNHEALTHY: "DOWN", Health.DRAINING: "OUT_OF_SERVICE"}
_DATA_CENTER = {"@class": "com.netflix.appinfo.InstanceInfo$DefaultDataCenterInfo", "name": "MyOwn"}
# Spring's decoder knows the field as overriddenStatus; XStream writes the legacy element name.
_XML_NAMES = {"overriddenStatus": "overriddenstatus"}

Instance = dict[str, Any]


@dataclass(frozen=True, slots=True)
class EurekaPaths:
    """Where each instance's pages live, appended to http://ip:port ([eureka] in the config)."""

    home: str = "/actuator"
    status: str = "/actuator/info"
    health: str = "/actuator/health"


@dataclass(frozen=True, slots=True)
class Representations:
    """One document in every form a client may ask for, each with its ETag."""

    json: bytes
    json_gzip: bytes
    xml: bytes
    xml_gzip: bytes
    etag: str  # of the content; the frontend adds the form to it

    @classmethod
    def of(cls, as_json: str, as_xml: str) -> Representations:
        json_body = as_json.encode()
        xml_body = as_xml.encode()
        digest = hashlib.blake2b(json_body, digest_size=12).hexdigest()
        return cls(json_body, _gzip(json_body), xml_body, _gzip(xml_body), digest)


@dataclass(frozen=True, slots=True)
class Change:
    at: float  # wall-clock seconds
    action: str  # ADDED, MODIFIED or DELETED
    instance: Instance  # as served then; actionType is set when rendered


@dataclass(frozen=True, slots=True)
class EurekaDocuments:
    version: int  # versions__delta: bumped with every snapshot
    hashcode: str  # apps__hashcode of the full registry
    apps: Representations
    delta: Representations
    changes: tuple[Change, ...]  # what `delta` holds, oldest first
    applications: Mapping[str, tuple[Instance, ...]]  # by upper-case app name


@dataclass
class _Known:
    instance: Instance
    first_seen_ms: int
    endpoint: Endpoint | None = None  # what it was rendered from: the same endpoint, the same instance


@dataclass
class EurekaRenderer:
    """Keeps what Eureka needs across snapshots: first-seen times and the recent-changes queue."""

    paths: EurekaPaths = field(default_factory=EurekaPaths)
    wall_clock: Callable[[], float] = time.time
    _known: dict[str, _Known] = field(default_factory=dict, init=False)
    _changes: deque[Change] = field(default_factory=deque, init=False)
    _fragments: Fragments = field(default_factory=lambda: Fragments(), init=False)  # noqa: PLW0108 - defined below
    _started: bool = field(default=False, init=False)

    def __call__(self, services: Mapping[str, Service], generation: int) -> EurekaDocuments:
        now = self.wall_clock()
        current: dict[str, Instance] = {}
        applications: dict[str, tuple[Instance, ...]] = {}
        rendered_from: dict[str, Endpoint] = {}
        for name, service in sorted(services.items()):
            instances = tuple(self._instance(name, e, now) for e in service.endpoints)
            applications[name.upper()] = instances
            for endpoint, instance in zip(service.endpoints, instances, strict=True):
                current[instance["instanceId"]] = instance
                rendered_from[instance["instanceId"]] = endpoint
        self._record_changes(current, rendered_from, now)
        docs = documents(generation, applications, tuple(self._changes), now, self._fragments)
        self._fragments.keep([*current.values(), *(c.instance for c in self._changes)])
        return docs

    def _instance(self, name: str, endpoint: Endpoint, now: float) -> Instance:
        instance_id = endpoint.address
        known = self._known.get(instance_id)
        if known is not None and known.endpoint == endpoint:
            return known.instance  # the same endpoint renders the same instance
        now_ms = int(now * 1000)
        instance = render_instance(name, endpoint, self.paths, known.first_seen_ms if known else now_ms, now_ms)
        if known is not None and _same(known.instance, instance):
            return known.instance  # unchanged: keep its timestamps, and so its bytes
        return instance

    def _record_changes(self, current: Mapping[str, Instance], sources: Mapping[str, Endpoint], now: float) -> None:
        # The first snapshot is the initial load, not a change: no client can hold an older
        # registry from this process, and a delta of every instance would only cost bytes.
        if self._started:
            for instance_id, instance in current.items():
                known = self._known.get(instance_id)
                if known is None:
                    self._changes.append(Change(now, "ADDED", instance))
                elif known.instance is not instance:
                    self._changes.append(Change(now, "MODIFIED", instance))
            for instance_id, known in self._known.items():
                if instance_id not in current:
                    self._changes.append(Change(now, "DELETED", known.instance))
        self._started = True
        self._known = {
            i: _Known(instance, self._known[i].first_seen_ms if i in self._known else int(now * 1000), sources[i])
            for i, instance in current.items()
        }
        while self._changes and self._changes[0].at < now - RETENTION_S:
            self._changes.popleft()


def _same(old: Instance, new: Instance) -> bool:
    """Equal but for the timestamps that record when it last changed."""
    ignored = ("lastUpdatedTimestamp", "lastDirtyTimestamp")
    return all(old[k] == new[k] for k in new if k not in ignored)


def render_instance(name: str, endpoint: Endpoint, paths: EurekaPaths, first_seen_ms: int, updated_ms: int) -> Instance:
    """One instance with every standard key and none other (Spring rejects unknown keys)."""
    ip, port = endpoint.host_ip, endpoint.host_port
    base = f"http://{ip}:{port}"
    metadata = {
        "zone": endpoint.az,
        "ecs-cluster": endpoint.cluster,
        "ecs-task-arn": endpoint.task_arn,
        "source": str(endpoint.source),
    }
    return {
        "instanceId": endpoint.address,
        "hostName": ip,
        "app": name.upper(),
        "ipAddr": ip,
        "status": _STATUS[endpoint.health],
        "overriddenStatus": "UNKNOWN",
        "port": {"$": port, "@enabled": "true"},
        "securePort": {"$": 443, "@enabled": "false"},
        "countryId": 1,
        "dataCenterInfo": _DATA_CENTER,
        "leaseInfo": {
            "renewalIntervalInSecs": 30,
            "durationInSecs": 90,
            "registrationTimestamp": first_seen_ms,
            "lastRenewalTimestamp": first_seen_ms,
            "evictionTimestamp": 0,
            "serviceUpTimestamp": first_seen_ms,
        },
        "metadata": {k: v for k, v in metadata.items() if v},
        "homePageUrl": base + paths.home,
        "statusPageUrl": base + paths.status,
        "healthCheckUrl": base + paths.health,
        "vipAddress": name,
        "secureVipAddress": name,
        "isCoordinatingDiscoveryServer": "false",
        "lastUpdatedTimestamp": str(updated_ms),
        "lastDirtyTimestamp": str(updated_ms),
    }


Fragment = tuple[str, str]  # one instance, with its actionType, as JSON and as XML


class Fragments:
    """Each instance rendered once per action and reused while the instance is: a change to one
    task re-renders one instance, not the whole registry."""

    def __init__(self) -> None:
        self._cache: dict[tuple[int, str], tuple[Instance, Fragment]] = {}

    def __call__(self, instance: Instance, action: str) -> Fragment:
        key = (id(instance), action)
        hit = self._cache.get(key)
        if hit is not None and hit[0] is instance:
            return hit[1]
        full = {**instance, "actionType": action}
        fragment = (json.dumps(full, separators=(",", ":")), instance_xml(full))
        self._cache[key] = (instance, fragment)  # holding the instance keeps its id() unique
        return fragment

    def keep(self, instances: Iterable[Instance]) -> None:
        """Forget every instance not listed."""
        live = {id(i) for i in instances}
        self._cache = {key: value for key, value in self._cache.items() if key[0] in live}


def documents(
    version: int,
    applications: Mapping[str, tuple[Instance, ...]],
    changes: tuple[Change, ...],
    now: float,
    fragments: Fragments | None = None,
) -> EurekaDocuments:
    """The full registry and the delta of `changes` still within the retention window at `now`."""
    fragments = fragments or Fragments()
    hashcode = reconcile_hash(i for instances in applications.values() for i in instances)
    full = {name: [fragments(i, "ADDED") for i in instances] for name, instances in applications.items()}
    return EurekaDocuments(
        version=version,
        hashcode=hashcode,
        apps=registry(version, hashcode, full),
        delta=delta(version, hashcode, changes, now, fragments),
        changes=changes,
        applications=MappingProxyType(dict(applications)),
    )


def delta(
    version: int, hashcode: str, changes: Iterable[Change], now: float, fragments: Fragments | None = None
) -> Representations:
    """apps/delta: recent changes grouped by application, with the hash of the full registry."""
    fragments = fragments or Fragments()
    grouped: dict[str, list[Fragment]] = {}
    for change in changes:
        if change.at >= now - RETENTION_S:
            grouped.setdefault(change.instance["app"], []).append(fragments(change.instance, change.action))
    return registry(version, hashcode, dict(sorted(grouped.items())))


def reconcile_hash(instances: Iterable[Instance]) -> str:
    """STATUS_count_ pairs sorted by status, as Eureka's Applications.getReconcileHashCode()."""
    counts = Counter(i["status"] for i in instances)
    return "".join(f"{status}_{counts[status]}_" for status in sorted(counts))


def registry(version: int, hashcode: str, applications: Mapping[str, list[Fragment]]) -> Representations:
    """An `applications` document assembled from rendered instances, in JSON and XML."""
    as_json = (
        f'{{"applications":{{"versions__delta":{json.dumps(str(version))},"apps__hashcode":{json.dumps(hashcode)},'
        '"application":['
        + ",".join(
            f'{{"name":{json.dumps(name)},"instance":[' + ",".join(j for j, _ in fragments) + "]}"
            for name, fragments in applications.items()
        )
        + "]}}"
    )
    as_xml = (
        '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n<applications>'
        f"<versions__delta>{version}</versions__delta><apps__hashcode>{escape(hashcode)}</apps__hashcode>"
        + "".join(_application_xml(name, (x for _, x in fragments)) for name, fragments in applications.items())
        + "</applications>"
    )
    return Representations.of(as_json, as_xml)


def application_xml(name: str, instances: Iterable[Instance]) -> str:
    return _application_xml(name, (instance_xml(i) for i in instances))


def _application_xml(name: str, instances_xml: Iterable[str]) -> str:
    return f"<application><name>{escape(name)}</name>" + "".join(instances_xml) + "</application>"


def instance_xml(instance: Instance) -> str:
    return _element("instance", instance)


def _element(name: str, value: object) -> str:
    """XStream's form: `@x` keys become attributes, `$` the text, other keys child elements."""
    tag = _XML_NAMES.get(name, name)
    if not isinstance(value, dict):
        return f"<{tag}>{escape(str(value))}</{tag}>"
    attributes = "".join(f" {k[1:]}={quoteattr(str(v))}" for k, v in value.items() if k.startswith("@"))
    if "$" in value:
        return f"<{tag}{attributes}>{escape(str(value['$']))}</{tag}>"
    children = "".join(_element(k, v) for k, v in value.items() if not k.startswith("@"))
    return f"<{tag}{attributes}>{children}</{tag}>"


def _gzip(body: bytes) -> bytes:
    # mtime=0: the same body always compresses to the same bytes, so ETags stay stable. Level 3
    # compresses a 5 MB registry in a third of level 6's time for 14% more bytes.
    return gzip.compress(body, compresslevel=3, mtime=0)

"""The Eureka wire format: one instance as JSON and XML, and registry documents assembled from
instances already encoded (so a change to one task encodes one instance, not the registry).

The rules come from real clients (py-eureka-client, eureka-js-client, Netflix and Spring
decoders): lists are always arrays, no instance keys beyond the standard ones, `port` holds only
`$` and `@enabled`, extra facts go into `metadata` as flat strings, and `apps__hashcode` counts
every served instance by status.
"""

from __future__ import annotations

import gzip
import hashlib
import json
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from xml.sax.saxutils import escape, quoteattr

from discobridge.model import Endpoint, Health

STATUS = {Health.HEALTHY: "UP", Health.UNHEALTHY: "DOWN", Health.DRAINING: "OUT_OF_SERVICE"}
_DATA_CENTER = {"@class": "com.netflix.appinfo.InstanceInfo$DefaultDataCenterInfo", "name": "MyOwn"}
# Spring's decoder knows the field as overriddenStatus; XStream writes the legacy element name.
_XML_NAMES = {"overriddenStatus": "overriddenstatus"}
_XML_HEAD = b'<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n'

Buffer = bytes | memoryview
Piece = tuple[Buffer, Buffer]  # one instance, with its actionType, as JSON and as XML


@dataclass(frozen=True, slots=True)
class EurekaPaths:
    """Where each instance's pages live, appended to http://ip:port ([eureka] in the config)."""

    home: str = "/actuator"
    status: str = "/actuator/info"
    health: str = "/actuator/health"


def render_instance(
    name: str, endpoint: Endpoint, paths: EurekaPaths, first_seen_ms: int, updated_ms: int
) -> dict[str, Any]:
    """One instance with every standard key and none other (Spring rejects unknown keys)."""
    ip, port = endpoint.host_ip, endpoint.host_port
    base = f"http://{endpoint.address}"
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
        "status": STATUS[endpoint.health],
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


def encode_instance(instance: dict[str, Any], action: str) -> tuple[bytes, bytes]:
    """The instance with its actionType, as JSON and as XML bytes."""
    full = {**instance, "actionType": action}
    return json.dumps(full, separators=(",", ":")).encode(), _element("instance", full).encode()


def with_action(piece: Piece, action: str) -> Piece:
    """An encoded ADDED instance re-labelled with another actionType (its last key)."""
    if action == "ADDED":
        return (
            piece if isinstance(piece[0], bytes) and isinstance(piece[1], bytes) else (bytes(piece[0]), bytes(piece[1]))
        )
    as_json, as_xml = bytes(piece[0]), bytes(piece[1])
    json_tail, xml_tail = b'"actionType":"ADDED"}', b"<actionType>ADDED</actionType></instance>"
    assert as_json.endswith(json_tail) and as_xml.endswith(xml_tail), "an instance encoded as ADDED"
    return (
        as_json[: -len(json_tail)] + f'"actionType":"{action}"}}'.encode(),
        as_xml[: -len(xml_tail)] + f"<actionType>{action}</actionType></instance>".encode(),
    )


def reconcile_hash(statuses: Iterable[str]) -> str:
    """STATUS_count_ pairs sorted by status, as Eureka's Applications.getReconcileHashCode()."""
    counts = Counter(statuses)
    return "".join(f"{status}_{counts[status]}_" for status in sorted(counts))


@dataclass(frozen=True, slots=True)
class Representations:
    """One document in every form a client may ask for, each with its ETag."""

    json: bytes
    json_gzip: bytes
    xml: bytes
    xml_gzip: bytes
    etag: str  # of the content; the frontend adds the form to it

    @classmethod
    def of(cls, json_body: bytes, xml_body: bytes) -> Representations:
        digest = hashlib.blake2b(json_body, digest_size=12).hexdigest()
        return cls(json_body, _gzip(json_body), xml_body, _gzip(xml_body), digest)


@dataclass(frozen=True, slots=True)
class Block:
    """One application's part of a registry document: where it lies, and where each of its
    instances lies within it, as (json offset, length, xml offset, length) from its start."""

    json_at: int
    json_len: int
    xml_at: int
    xml_len: int
    locations: Mapping[str, tuple[int, int, int, int]]


def application_block(
    name: str, pieces: Sequence[tuple[str, Piece]]
) -> tuple[bytes, bytes, dict[str, tuple[int, int, int, int]]]:
    """One application's JSON object and XML element from its encoded instances (by id)."""
    json_head = f'{{"name":{json.dumps(name)},"instance":['.encode()
    xml_head = f"<application><name>{escape(name)}</name>".encode()
    locations: dict[str, tuple[int, int, int, int]] = {}
    json_at, xml_at = len(json_head), len(xml_head)
    for instance_id, (as_json, as_xml) in pieces:
        locations[instance_id] = (json_at, len(as_json), xml_at, len(as_xml))
        json_at += len(as_json) + 1  # and the comma after it
        xml_at += len(as_xml)
    as_json = json_head + b",".join(p[0] for _, p in pieces) + b"]}"
    as_xml = xml_head + b"".join(p[1] for _, p in pieces) + b"</application>"
    return as_json, as_xml, locations


def assemble(
    version: int, hashcode: str, blocks: Sequence[tuple[Buffer, Buffer]]
) -> tuple[bytes, bytes, list[tuple[int, int]]]:
    """An `applications` document from application blocks, in JSON and XML, and where each
    block starts in each."""
    json_head = (
        f'{{"applications":{{"versions__delta":{json.dumps(str(version))},'
        f'"apps__hashcode":{json.dumps(hashcode)},"application":['
    ).encode()
    xml_head = (
        _XML_HEAD
        + (
            f"<applications><versions__delta>{version}</versions__delta>"
            f"<apps__hashcode>{escape(hashcode)}</apps__hashcode>"
        ).encode()
    )
    starts: list[tuple[int, int]] = []
    json_at, xml_at = len(json_head), len(xml_head)
    for as_json, as_xml in blocks:
        starts.append((json_at, xml_at))
        json_at += len(as_json) + 1
        xml_at += len(as_xml)
    as_json = json_head + b",".join(b[0] for b in blocks) + b"]}}"
    as_xml = xml_head + b"".join(b[1] for b in blocks) + b"</applications>"
    return as_json, as_xml, starts


def registry(version: int, hashcode: str, applications: Iterable[tuple[str, Sequence[Piece]]]) -> tuple[bytes, bytes]:
    """A small `applications` document (a delta, one VIP) straight from encoded instances."""
    blocks = [application_block(name, [(str(n), p) for n, p in enumerate(pieces)])[:2] for name, pieces in applications]
    as_json, as_xml, _ = assemble(version, hashcode, blocks)
    return as_json, as_xml


def single(root: str, pieces: Sequence[Piece], name: str | None = None) -> tuple[bytes, bytes]:
    """{"application": {...}} (with `name`) or {"instance": {...}}, in JSON and XML."""
    if name is None:
        return b'{"instance":' + bytes(pieces[0][0]) + b"}", _XML_HEAD + bytes(pieces[0][1])
    as_json = f'{{"{root}":{{"name":{json.dumps(name)},"instance":['.encode() + b",".join(p[0] for p in pieces)
    as_xml = f"<application><name>{escape(name)}</name>".encode() + b"".join(p[1] for p in pieces)
    return as_json + b"]}}", _XML_HEAD + as_xml + b"</application>"


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

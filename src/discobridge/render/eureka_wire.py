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
from discobridge.render.stitched_gzip import LEVEL, Part, stitch

STATUS = {Health.HEALTHY: "UP", Health.UNHEALTHY: "DOWN", Health.DRAINING: "OUT_OF_SERVICE"}
_DATA_CENTER = {"@class": "com.netflix.appinfo.InstanceInfo$DefaultDataCenterInfo", "name": "MyOwn"}
# Spring's decoder knows the field as overriddenStatus; XStream writes the legacy element name
# (overriddenstatus), as _instance_xml does.
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
    name: str, endpoint: Endpoint, instance_id: str, paths: EurekaPaths, first_seen_ms: int, updated_ms: int
) -> dict[str, Any]:
    """One instance with every standard key and none other (Spring rejects unknown keys)."""
    ip, port = endpoint.host_ip, endpoint.host_port
    base = f"http://{endpoint.address}"
    metadata = {
        "zone": endpoint.az,
        "ecs-cluster": endpoint.cluster,
        "ecs-task-arn": endpoint.task_arn,
        "source": str(endpoint.source),
        "aws-account": endpoint.account,
        "aws-region": endpoint.region,
        # Every named port, and the one Spring Boot Admin and Prometheus' eureka_sd relabelling
        # conventionally read: "management", failing that "metrics".
        **{f"port.{port_name}": str(port) for port_name, port in endpoint.ports},
        "management.port": str(endpoint.port("management") or endpoint.port("metrics") or ""),
    }
    return {
        "instanceId": instance_id,
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
    return json.dumps(full, separators=(",", ":")).encode(), _instance_xml(full).encode()


def _text(value: object) -> str:
    """XML text of a value: escaped where it needs to be (most fields are addresses and names)."""
    text = str(value)
    return escape(text) if "&" in text or "<" in text or ">" in text else text


def _instance_xml(i: dict[str, Any]) -> str:
    """XStream's form of an instance (what `_element` writes for any dict), spelled out for the
    fixed shape of render_instance: it runs once per changed instance, 10,000 times at a cold start."""
    e, lease, port, secure = _text, i["leaseInfo"], i["port"], i["securePort"]
    metadata = "".join(f"<{k}>{e(v)}</{k}>" for k, v in i["metadata"].items())
    text = (
        "instanceId", "hostName", "app", "ipAddr", "status",
    )  # fmt: skip
    head = "".join(f"<{k}>{e(i[k])}</{k}>" for k in text)
    tail = "".join(
        f"<{k}>{e(i[k])}</{k}>"
        for k in ("homePageUrl", "statusPageUrl", "healthCheckUrl", "vipAddress", "secureVipAddress",
                  "isCoordinatingDiscoveryServer", "lastUpdatedTimestamp", "lastDirtyTimestamp", "actionType")
    )  # fmt: skip
    data_center = i["dataCenterInfo"]
    return (
        f"<instance>{head}<overriddenstatus>{e(i['overriddenStatus'])}</overriddenstatus>"
        f"<port enabled={quoteattr(port['@enabled'])}>{port['$']}</port>"
        f"<securePort enabled={quoteattr(secure['@enabled'])}>{secure['$']}</securePort>"
        f"<countryId>{i['countryId']}</countryId>"
        f"<dataCenterInfo class={quoteattr(data_center['@class'])}>"
        f"<name>{e(data_center['name'])}</name></dataCenterInfo>"
        "<leaseInfo>"
        + "".join(f"<{k}>{v}</{k}>" for k, v in lease.items())
        + f"</leaseInfo><metadata>{metadata}</metadata>{tail}</instance>"
    )


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
    """One document in every form a client may ask for, each with its ETag. The full registry
    keeps its XML compressed only (`xml` None): every XML client asks for gzip, and the rare one
    that does not is served from it unpacked once (frontends.eureka)."""

    json: bytes
    json_gzip: bytes
    xml: bytes | None
    xml_gzip: bytes
    etag: str  # of the content; the frontend adds the form to it

    @classmethod
    def of(cls, json_body: bytes, xml_body: bytes) -> Representations:
        digest = hashlib.blake2b(json_body, digest_size=12).hexdigest()
        return cls(json_body, _gzip(json_body), xml_body, _gzip(xml_body), digest)


@dataclass(frozen=True, slots=True)
class Block:
    """One application's part of a registry document: where its JSON lies in the document, its
    compressed forms, and where each of its instances lies within its own JSON and XML, as
    (json offset, length, xml offset, length)."""

    json_at: int
    json_len: int
    locations: Mapping[str, tuple[int, int, int, int]]
    compressed: Compressed


@dataclass(frozen=True, slots=True)
class Compressed:
    """One application compressed on its own (its JSON with the comma that follows another
    application's, its XML as it is) and a digest of it: reused while the application is
    unchanged, so a change to one task compresses one application, not the registry."""

    json: Part
    xml: Part
    digest: bytes

    @classmethod
    def of(cls, as_json: Buffer, as_xml: Buffer) -> Compressed:
        return cls(Part.of(b"," + bytes(as_json)), Part.of(as_xml), hashlib.blake2b(as_json, digest_size=12).digest())


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


_JSON_TAIL, _XML_TAIL = b"]}}", b"</applications>"


def _heads(version: int, hashcode: str) -> tuple[bytes, bytes]:
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
    return json_head, xml_head


def assemble_json(version: int, hashcode: str, blocks: Sequence[Buffer]) -> tuple[bytes, list[int]]:
    """The JSON `applications` document from application blocks, and where each block starts."""
    head = _heads(version, hashcode)[0]
    starts: list[int] = []
    at = len(head)
    for block in blocks:
        starts.append(at)
        at += len(block) + 1
    return head + b",".join(blocks) + _JSON_TAIL, starts


def assemble_xml(version: int, hashcode: str, blocks: Iterable[Buffer]) -> bytes:
    return _heads(version, hashcode)[1] + b"".join(blocks) + _XML_TAIL


def compressed_registry(
    version: int, hashcode: str, as_json: bytes, blocks: Sequence[tuple[Buffer, Compressed]]
) -> Representations:
    """The full registry's Representations, its gzip forms stitched together from each
    application's own compressed parts instead of compressing the whole again."""
    json_head, xml_head = _heads(version, hashcode)
    json_parts = [Part.of(json_head)]
    if blocks:
        json_parts.append(Part.of(blocks[0][0]))  # the first one has no comma before it
        json_parts += [c.json for _, c in blocks[1:]]
    json_parts.append(Part.of(_JSON_TAIL))
    xml_parts = [Part.of(xml_head), *(c.xml for _, c in blocks), Part.of(_XML_TAIL)]
    digest = hashlib.blake2b(json_head + b"".join(c.digest for _, c in blocks), digest_size=12).hexdigest()
    return Representations(as_json, stitch(json_parts), None, stitch(xml_parts), digest)


def registry(version: int, hashcode: str, applications: Iterable[tuple[str, Sequence[Piece]]]) -> Representations:
    """A small `applications` document (a delta, one VIP) straight from encoded instances."""
    blocks = [application_block(name, [(str(n), p) for n, p in enumerate(pieces)])[:2] for name, pieces in applications]
    as_json, _ = assemble_json(version, hashcode, [b[0] for b in blocks])
    return Representations.of(as_json, assemble_xml(version, hashcode, [b[1] for b in blocks]))


def single(root: str, pieces: Sequence[Piece], name: str | None = None) -> tuple[bytes, bytes]:
    """{"application": {...}} (with `name`) or {"instance": {...}}, in JSON and XML."""
    if name is None:
        return b'{"instance":' + bytes(pieces[0][0]) + b"}", _XML_HEAD + bytes(pieces[0][1])
    as_json = f'{{"{root}":{{"name":{json.dumps(name)},"instance":['.encode() + b",".join(p[0] for p in pieces)
    as_xml = f"<application><name>{escape(name)}</name>".encode() + b"".join(p[1] for p in pieces)
    return as_json + b"]}}", _XML_HEAD + as_xml + b"</application>"


def _gzip(body: bytes) -> bytes:
    # mtime=0: the same body always compresses to the same bytes, so ETags stay stable.
    return gzip.compress(body, compresslevel=LEVEL, mtime=0)

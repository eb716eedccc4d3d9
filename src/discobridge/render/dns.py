"""Services -> DNS answers as wire bytes, rendered once per snapshot with dnslib.

Each answer is stored as the bytes that follow the question in a reply to the canonical
lowercase name. A server splices the client's id, flags and question (in the client's own case)
in front of them. Those bytes compress names against the question at offset 12, which holds for
any question with the same labels, whatever their case.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType

from dnslib import AAAA, NS, RR, SOA, SRV, TXT, A, DNSHeader, DNSQuestion, DNSRecord

from discobridge.model import Endpoint, Service, normalize_service_name

A_TYPE, NS_TYPE, SOA_TYPE, TXT_TYPE, AAAA_TYPE, SRV_TYPE, ANY_TYPE = 1, 2, 6, 16, 28, 33, 255
NOERROR, NXDOMAIN = 0, 3
# Pre-rotated orders kept per multi-record answer; a server cycles through them per query.
ROTATIONS = 4


@dataclass(frozen=True, slots=True)
class Variant:
    """One rendered reply body: section counts and the bytes after the question."""

    ancount: int
    nscount: int
    arcount: int
    body: bytes


@dataclass(frozen=True, slots=True)
class Answer:
    rcode: int
    variants: tuple[Variant, ...]


@dataclass(frozen=True, slots=True)
class DnsAnswers:
    """Every answer of one snapshot, by lowercase wire-format name and query type."""

    zone: bytes
    names: Mapping[bytes, Mapping[int, Answer]]
    nodata: Answer
    nxdomain: Answer

    def lookup(self, qname: bytes, qtype: int) -> Answer | None:
        """The answer for a lowercase wire name inside the zone; None when the name is outside it."""
        if not _inside(qname, self.zone):
            return None
        by_type = self.names.get(qname)
        if by_type is None:
            return self.nxdomain
        found = by_type.get(qtype)
        if found is None and qtype == ANY_TYPE:
            # RFC 8482: answer ANY with one RRset rather than everything.
            found = next((by_type[t] for t in (A_TYPE, SRV_TYPE, SOA_TYPE) if t in by_type), None)
        return found or self.nodata


def wire_name(name: str) -> bytes:
    """A dotted name in DNS wire format (length-prefixed labels, then the root)."""
    labels = [label for label in name.strip(".").split(".") if label]
    return b"".join(bytes([len(label)]) + label.encode("ascii") for label in labels) + b"\0"


def _inside(qname: bytes, zone: bytes) -> bool:
    if qname == zone:
        return True
    if not qname.endswith(zone):
        return False
    # The zone must start on a label boundary: walk the labels of the question.
    offset, boundary = 0, len(qname) - len(zone)
    while offset < boundary:
        offset += qname[offset] + 1
    return offset == boundary


class DnsRenderer:
    """Renders DnsAnswers for a zone; re-renders only services whose endpoints changed."""

    def __init__(self, *, zone: str, ttl_s: int) -> None:
        self._zone = zone.lower().strip(".")
        self._ttl = ttl_s
        self._cache: dict[Service, dict[bytes, dict[int, Answer]]] = {}

    def __call__(self, services: Mapping[str, Service], generation: int) -> DnsAnswers:
        names: dict[bytes, dict[int, Answer]] = {}
        cache: dict[Service, dict[bytes, dict[int, Answer]]] = {}
        for service in services.values():
            rendered = self._cache.get(service)
            if rendered is None:
                rendered = self._render_service(service)
            cache[service] = rendered
            names.update(rendered)
        self._cache = cache
        serial = generation & 0xFFFFFFFF
        apex = wire_name(self._zone)
        names[apex] = {
            SOA_TYPE: Answer(NOERROR, (_reply(self._zone, SOA_TYPE, [self._soa(serial)]),)),
            NS_TYPE: Answer(NOERROR, (_reply(self._zone, NS_TYPE, [self._ns()]),)),
        }
        nodata = Answer(NOERROR, (self._negative(serial),))
        for empty in _empty_non_terminals(names, apex):
            names[empty] = {}
        return DnsAnswers(
            zone=apex,
            names=MappingProxyType({k: MappingProxyType(v) for k, v in names.items()}),
            nodata=nodata,
            nxdomain=Answer(NXDOMAIN, nodata.variants),
        )

    def _render_service(self, service: Service) -> dict[bytes, dict[int, Answer]]:
        zone, name = self._zone, service.name
        out: dict[bytes, dict[int, Answer]] = {}
        target = {e: f"{_target_label(e)}.{name}.{zone}" for e in service.endpoints}
        out[wire_name(f"{name}.{zone}")] = self._records(f"{name}.{zone}", service.serving, target)
        for cluster in service.clusters:
            subset = Service(name, tuple(e for e in service.endpoints if e.cluster == cluster))
            qname = f"{name}.{normalize_service_name(cluster)}.{zone}"
            out[wire_name(qname)] = self._records(qname, subset.serving, target)
        rfc2782 = f"_{name}._tcp.{zone}"
        out[wire_name(rfc2782)] = {SRV_TYPE: self._srv(rfc2782, service.serving, target)}
        for endpoint in service.endpoints:
            qname = target[endpoint]
            rtype = AAAA_TYPE if ":" in endpoint.host_ip else A_TYPE
            rr = self._address(qname, endpoint.host_ip)
            out[wire_name(qname)] = {rtype: Answer(NOERROR, (_reply(qname, rtype, [rr]),))}
        return out

    def _records(self, qname: str, serving: Sequence[Endpoint], target: Mapping[Endpoint, str]) -> dict[int, Answer]:
        ips = list(dict.fromkeys(e.host_ip for e in serving))
        a_records = [self._address(qname, ip) for ip in ips if ":" not in ip]
        aaaa_records = [self._address(qname, ip) for ip in ips if ":" in ip]
        txt_records = [self._rr(qname, TXT_TYPE, TXT(e.address)) for e in serving]
        answers = {TXT_TYPE: _rotated(qname, TXT_TYPE, txt_records), SRV_TYPE: self._srv(qname, serving, target)}
        if a_records:
            answers[A_TYPE] = _rotated(qname, A_TYPE, a_records)
        if aaaa_records:
            answers[AAAA_TYPE] = _rotated(qname, AAAA_TYPE, aaaa_records)
        return answers

    def _srv(self, qname: str, serving: Sequence[Endpoint], target: Mapping[Endpoint, str]) -> Answer:
        records = [self._rr(qname, SRV_TYPE, SRV(1, 1, e.host_port, target[e])) for e in serving]
        glue = [self._address(target[e], e.host_ip) for e in serving]
        return _rotated(qname, SRV_TYPE, records, additional=glue)

    def _address(self, owner: str, ip: str) -> RR:
        return self._rr(owner, AAAA_TYPE, AAAA(ip)) if ":" in ip else self._rr(owner, A_TYPE, A(ip))

    def _rr(self, owner: str, rtype: int, rdata: object) -> RR:
        return RR(owner, rtype, rdata=rdata, ttl=self._ttl)

    def _soa_fields(self, serial: int) -> tuple[str, str, tuple[int, int, int, int, int]]:
        # Negative answers are cached for min(SOA TTL, minimum) (RFC 2308): both are the TTL.
        return f"ns.{self._zone}", f"hostmaster.{self._zone}", (serial, 60, 30, 3600, self._ttl)

    def _soa(self, serial: int) -> RR:
        return self._rr(self._zone, SOA_TYPE, SOA(*self._soa_fields(serial)))

    def _negative(self, serial: int) -> Variant:
        """The SOA for NXDOMAIN/NODATA, with no compression: the question it follows varies."""
        mname, rname, times = self._soa_fields(serial)
        rdata = wire_name(mname) + wire_name(rname) + struct.pack("!5I", *times)
        header = struct.pack("!HHIH", SOA_TYPE, 1, self._ttl, len(rdata))
        return Variant(0, 1, 0, wire_name(self._zone) + header + rdata)

    def _ns(self) -> RR:
        return self._rr(self._zone, NS_TYPE, NS(f"ns.{self._zone}"))


def _target_label(endpoint: Endpoint) -> str:
    """The SRV target label: the task id, or the address when an endpoint has no task."""
    label = normalize_service_name(endpoint.task_id or f"{endpoint.host_ip}-{endpoint.host_port}")
    return label.strip("-")[:63] or "endpoint"


def _reply(qname: str, qtype: int, answers: list[RR], additional: Iterable[RR] = ()) -> Variant:
    record = DNSRecord(DNSHeader(qr=1, aa=1), q=DNSQuestion(qname, qtype))
    record.add_answer(*answers)
    record.add_ar(*additional)
    wire = record.pack()
    return Variant(len(answers), 0, len(record.ar), wire[12 + len(wire_name(qname)) + 4 :])


def _rotated(qname: str, qtype: int, records: list[RR], additional: list[RR] | None = None) -> Answer:
    count = min(len(records), ROTATIONS) or 1
    variants = tuple(_reply(qname, qtype, records[i:] + records[:i], additional or []) for i in range(count))
    return Answer(NOERROR, variants)


def _empty_non_terminals(names: Mapping[bytes, object], apex: bytes) -> set[bytes]:
    """Names with nothing of their own but something below them: NODATA, never NXDOMAIN (RFC 8020)."""
    empty: set[bytes] = set()
    for name in names:
        offset = 0
        while offset < len(name) - len(apex):
            offset += name[offset] + 1
            parent = name[offset:]
            if parent == apex or parent in names:
                break
            empty.add(parent)
    return empty

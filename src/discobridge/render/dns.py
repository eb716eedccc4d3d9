"""Services -> DNS answers as wire bytes, rendered once per snapshot.

Each answer is stored as the bytes that follow the question in a reply. A server splices the
client's id, flags and question (in the client's own case) in front of them. Every answer record
is owned by the question's name, so its owner is the pointer 0xC00C to offset 12 whatever the
name: one endpoint's record bytes serve every name it appears under, and pre-rotated orders are
concatenations. Names in record data are written in full, never compressed, so the bytes are the
same wherever they land. Record data is packed here (A, AAAA, TXT, SRV and SOA are a few fixed
fields each); dnspython and dig check it in the tests.
"""

from __future__ import annotations

import socket
import struct
from collections.abc import Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType

import structlog

from discobridge.model import Endpoint, Service, serving
from discobridge.render import ViewKey
from discobridge.render.dns_names import (
    QUALIFIED,
    Claim,
    carries,
    clash_warning,
    dotted,
    qualifier_labels,
    target_claim,
    target_labels,
    valid,
    wins,
)
from discobridge.render.memo import PerService

A_TYPE, NS_TYPE, SOA_TYPE, TXT_TYPE, AAAA_TYPE, SRV_TYPE, ANY_TYPE = 1, 2, 6, 16, 28, 33, 255
NOERROR, NXDOMAIN = 0, 3
# Rotated orders served per multi-record answer; a server cycles through them per query.
ROTATIONS = 4


@dataclass(frozen=True, slots=True)
class Variant:
    """One reply body: section counts and the bytes after the question."""

    ancount: int
    nscount: int
    arcount: int
    body: bytes
    # Bytes of the answer and authority sections at the start of `body`: what is left when the
    # additional section does not fit (RFC 2181 9: no TC merely for want of glue).
    essential: int = -1

    def without_additional(self) -> bytes:
        return self.body if self.essential < 0 else self.body[: self.essential]


@dataclass(frozen=True, slots=True)
class Answer:
    """The records of one answer, each the same bytes object wherever it appears (one endpoint's
    SRV record serves S.Z, S.C.Z and _S._tcp.Z), so a large zone costs references, not copies.
    The rotated orders a server cycles through are joined when a query first asks for them."""

    rcode: int
    answer: tuple[bytes, ...] = ()
    authority: tuple[bytes, ...] = ()
    additional: tuple[bytes, ...] = ()

    @property
    def turns(self) -> int:
        """How many orders of the answer section are served in rotation (at least one)."""
        return min(len(self.answer), ROTATIONS) or 1

    def variant(self, turn: int) -> Variant:
        """The reply body of rotation `turn`: the answer records starting with the turn-th."""
        records = self.answer[turn:] + self.answer[:turn]
        essential = b"".join(records) + b"".join(self.authority)
        return Variant(
            len(self.answer), len(self.authority), len(self.additional), essential + b"".join(self.additional),
            len(essential) if self.additional else -1,
        )  # fmt: skip


@dataclass(frozen=True, slots=True)
class DnsAnswers:
    """Every answer of one snapshot, by lowercase wire-format name and query type."""

    zone: bytes
    names: Mapping[bytes, Mapping[int, Answer]]
    nodata: Answer
    nxdomain: Answer
    warnings: tuple[str, ...] = ()  # names that clashed (render.dns_names), and who kept them

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


log = structlog.get_logger(__name__)
_QUESTION = b"\xc0\x0c"  # a compression pointer to the question's name at offset 12


@dataclass(frozen=True, slots=True)
class _EndpointRecords:
    """One endpoint's records, rendered once and shared by every name that lists it."""

    address_type: int
    address: bytes  # its A or AAAA record, owned by the question
    txt: bytes
    srv: bytes
    glue: bytes  # its address record owned by the SRV target, for the additional section


DNS: ViewKey[DnsAnswers] = ViewKey("dns")


class DnsRenderer:
    """Renders DnsAnswers for a zone; re-renders only services whose endpoints changed."""

    key = DNS

    def __init__(self, *, zone: str, ttl_s: int, ns_name: str = "", ns_addresses: Sequence[str] = ()) -> None:
        self._zone = zone.lower().strip(".")
        self._ttl = ttl_s
        # The zone's NS target, and the addresses its own A/AAAA answer with: an authoritative
        # server whose NS name does not resolve fails every zone lint.
        self._ns_name = (ns_name or f"ns.{self._zone}").lower().strip(".")
        self._ns_addresses = tuple(ns_addresses)
        self._per_service = PerService(self._render_service)

    def __call__(self, services: Mapping[str, Service], generation: int, previous: DnsAnswers | None) -> DnsAnswers:
        names: dict[bytes, Mapping[int, Answer]] = {}
        claims: dict[bytes, Claim] = {}
        parents: set[bytes] = set()
        warnings: list[str] = []
        for rendered in self._per_service(services).values():
            warnings += rendered.warnings
            parents |= rendered.parents
            for name, answers in rendered.names.items():
                claim = rendered.claims.get(name)
                if name in names:
                    known = claims.get(name)
                    if claim is None or known is None:
                        continue
                    kept, lost = (claim, known) if wins(claim, known) else (known, claim)
                    warnings.append(clash_warning(dotted(name), kept, lost))
                    if kept is known:
                        continue
                names[name] = answers
                if claim is not None:
                    claims[name] = claim
        apex = wire_name(self._zone)
        soa = self._soa_rdata(generation & 0xFFFFFFFF)
        names[apex] = MappingProxyType(
            {
                SOA_TYPE: _single(self._record(_QUESTION, SOA_TYPE, soa)),
                NS_TYPE: _single(self._record(_QUESTION, NS_TYPE, wire_name(self._ns_name))),
            }
        )
        ns = wire_name(self._ns_name)
        if ns != apex and _inside(ns, apex):
            # The NS target is reserved whatever a service is called: its own addresses, or
            # NODATA when none is known (a wildcard listen), never a task's.
            if names.get(ns):
                warnings.append(f"{self._ns_name} is the zone's name server ([dns] ns_name): not a service's name")
            names[ns] = self._address_answers(self._ns_addresses)
            parents |= _empty_non_terminals([ns], apex)
        # The SOA for NXDOMAIN and NODATA goes in the authority section under the zone's name.
        negative = (self._record(apex, SOA_TYPE, soa),)
        for empty in parents - names.keys():
            names[empty] = _NOTHING
        return DnsAnswers(
            zone=apex,
            names=MappingProxyType(names),
            nodata=Answer(NOERROR, authority=negative),
            nxdomain=Answer(NXDOMAIN, authority=negative),
            warnings=tuple(sorted(set(warnings))),
        )

    def _render_service(self, service: Service) -> _ServiceNames:
        """A service's names with their answers, who each may-clash name is for, and the names
        above them (empty non-terminals unless another name takes them: RFC 8020, NODATA)."""
        zone, name = self._zone, service.name
        if not carries(zone, name):
            # A name DNS cannot carry (a label over 63 bytes, a name over 255) is left out of DNS
            # only; HTTP and Eureka still serve the service.
            log.warning("dns_name_too_long", service=name, zone=zone)
            return _ServiceNames({}, {}, set(), ())
        targets = {e: f"{label}.{name}.{zone}" for e, label in target_labels(service).items()}
        records = {e: self._endpoint_records(e, targets[e]) for e in service.endpoints}
        out = {wire_name(f"{name}.{zone}"): _answers(service.serving, records)}
        claims: dict[bytes, Claim] = {}
        named = sorted({port for e in service.endpoints for port, _ in e.ports})
        for port in named:  # RFC 2782 names of the other ports, as Consul and Kubernetes serve them
            if valid(f"_{port}._tcp.{name}.{zone}"):
                out[wire_name(f"_{port}._tcp.{name}.{zone}")] = self._named_srv(service, port, targets, records)
        labels, warnings = qualifier_labels(service)
        for label, qualifier in labels.items():
            qualified = f"{name}.{label}.{zone}"
            if not valid(qualified):
                continue
            subset = Service(name, tuple(e for e in service.endpoints if qualifier.selects(e)))
            whole = len(subset.endpoints) == len(service.endpoints)  # one account, region: the usual case
            out[wire_name(qualified)] = out[wire_name(f"{name}.{zone}")] if whole else _answers(subset.serving, records)
            claims[wire_name(qualified)] = Claim(QUALIFIED, f"service {name} in {qualifier}")
            for port in named:
                if valid(f"_{port}._tcp.{qualified}"):
                    out[wire_name(f"_{port}._tcp.{qualified}")] = (
                        out[wire_name(f"_{port}._tcp.{name}.{zone}")]
                        if whole
                        else self._named_srv(subset, port, targets, records)
                    )
        out[wire_name(f"_{name}._tcp.{zone}")] = {SRV_TYPE: _srv(service.serving, records)} if service.serving else {}
        proxied: dict[bytes, Mapping[int, Answer]] = {k: MappingProxyType(v) for k, v in out.items()}
        for endpoint, target in targets.items():
            mine = records[endpoint]
            proxied[wire_name(target)] = _OneType(mine.address_type, _single(mine.address))
            claims[wire_name(target)] = target_claim(endpoint)
        return _ServiceNames(proxied, claims, _empty_non_terminals(proxied, wire_name(zone)), tuple(warnings))

    def _named_srv(
        self,
        service: Service,
        port_name: str,
        targets: Mapping[Endpoint, str],
        records: Mapping[Endpoint, _EndpointRecords],
    ) -> dict[int, Answer]:
        """SRV for one named port: the serving endpoints that have it, with the same targets
        (and glue) as their main port's."""
        having = serving(e for e in service.endpoints if e.port(port_name))
        if not having:
            return {}
        answer = [
            self._record(_QUESTION, SRV_TYPE, struct.pack("!HHH", 1, 1, e.port(port_name) or 0) + wire_name(targets[e]))
            for e in having
        ]
        return {SRV_TYPE: _rotated(answer, [records[e].glue for e in having])}

    def _endpoint_records(self, endpoint: Endpoint, target: str) -> _EndpointRecords:
        ip = endpoint.host_ip
        family = socket.AF_INET6 if ":" in ip else socket.AF_INET
        address_type, address_data = (AAAA_TYPE if ":" in ip else A_TYPE), socket.inet_pton(family, ip)
        # SRV's target is never compressed (RFC 2782): priority, weight, port, the full name.
        srv = struct.pack("!HHH", 1, 1, endpoint.host_port) + wire_name(target)
        return _EndpointRecords(
            address_type=address_type,
            address=self._record(_QUESTION, address_type, address_data),
            txt=self._record(_QUESTION, TXT_TYPE, _character_string(endpoint.address)),
            srv=self._record(_QUESTION, SRV_TYPE, srv),
            glue=self._record(wire_name(target), address_type, address_data),
        )

    def _record(self, owner: bytes, rtype: int, rdata: bytes) -> bytes:
        return owner + struct.pack("!HHIH", rtype, 1, self._ttl, len(rdata)) + rdata

    def _address_answers(self, addresses: Sequence[str]) -> Mapping[int, Answer]:
        by_type: dict[int, list[bytes]] = {}
        for ip in addresses:
            family, rtype = (socket.AF_INET6, AAAA_TYPE) if ":" in ip else (socket.AF_INET, A_TYPE)
            by_type.setdefault(rtype, []).append(self._record(_QUESTION, rtype, socket.inet_pton(family, ip)))
        return MappingProxyType({rtype: Answer(NOERROR, tuple(records)) for rtype, records in by_type.items()})

    def _soa_rdata(self, serial: int) -> bytes:
        # Negative answers are cached for min(SOA TTL, minimum) (RFC 2308): both are the TTL.
        # Written by hand: dnslib would compress the two names against each other.
        names = wire_name(self._ns_name) + wire_name(f"hostmaster.{self._zone}")
        return names + struct.pack("!5I", serial, 60, 30, 3600, self._ttl)


def _character_string(text: str) -> bytes:
    """One <character-string> (RFC 1035 3.3): a length byte, then at most 255 bytes."""
    data = text.encode()[:255]
    return bytes([len(data)]) + data


def _single(record: bytes) -> Answer:
    return Answer(NOERROR, (record,))


def _answers(serving: Sequence[Endpoint], records: Mapping[Endpoint, _EndpointRecords]) -> dict[int, Answer]:
    """A, AAAA, TXT and SRV for a name that lists `serving`; A/AAAA hold each host IP once."""
    per_ip: dict[str, _EndpointRecords] = {}
    for endpoint in serving:
        per_ip.setdefault(endpoint.host_ip, records[endpoint])
    if not serving:
        return {}  # every endpoint draining: the name exists, with no records (NODATA)
    answers = {
        TXT_TYPE: _rotated([records[e].txt for e in serving]),
        SRV_TYPE: _srv(serving, records),
    }
    for rtype in (A_TYPE, AAAA_TYPE):
        addresses = [r.address for r in per_ip.values() if r.address_type == rtype]
        if addresses:
            answers[rtype] = _rotated(addresses)
    return answers


def _srv(serving: Sequence[Endpoint], records: Mapping[Endpoint, _EndpointRecords]) -> Answer:
    return _rotated([records[e].srv for e in serving], additional=[records[e].glue for e in serving])


def _rotated(answer: list[bytes], additional: Sequence[bytes] = ()) -> Answer:
    """An answer served in rotation: each query's answer section starts with a different record."""
    return Answer(NOERROR, tuple(answer), (), tuple(additional))


_NOTHING: Mapping[int, Answer] = MappingProxyType({})


class _OneType(Mapping[int, Answer]):
    """The answers of a name with one record type (each SRV target's A or AAAA): read-only, a
    tenth of a dict and its read-only view, for every endpoint of the estate."""

    __slots__ = ("_answer", "_rtype")

    def __init__(self, rtype: int, answer: Answer) -> None:
        self._rtype, self._answer = rtype, answer

    def __getitem__(self, rtype: int) -> Answer:
        if rtype != self._rtype:
            raise KeyError(rtype)
        return self._answer

    def get(self, rtype: int, default: Answer | None = None) -> Answer | None:  # type: ignore[override]
        return self._answer if rtype == self._rtype else default  # what every lookup calls: no raise

    def __iter__(self) -> Iterator[int]:
        yield self._rtype

    def __len__(self) -> int:
        return 1


@dataclass(frozen=True, slots=True)
class _ServiceNames:
    names: dict[bytes, Mapping[int, Answer]]
    claims: dict[bytes, Claim]  # who each name that may clash is for
    parents: set[bytes]
    warnings: tuple[str, ...]


def _empty_non_terminals(names: Collection[bytes], apex: bytes) -> set[bytes]:
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

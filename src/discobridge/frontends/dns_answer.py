"""Answers DNS queries from the current snapshot's precomputed bytes, without parsing on a hit.

A reply depends only on the query bytes after the 2-byte id (flags, question in the client's
case, EDNS size), so a bounded memo maps those bytes to finished replies, cleared whenever the
snapshot changes. A miss parses the header and question by hand; only a question with compressed
names goes through dnslib.
"""

from __future__ import annotations

import struct
from collections import Counter
from dataclasses import dataclass

from dnslib import DNSRecord

from discobridge.render.dns import DNS, Answer, DnsAnswers, Variant
from discobridge.snapshot import Snapshot
from discobridge.store import SnapshotStore

_HEADER = struct.Struct("!6H")
_COUNTS = struct.Struct("!5H")
_QR, _AA, _TC, _RD = 0x8000, 0x0400, 0x0200, 0x0100
FORMERR, SERVFAIL, NOTIMP, REFUSED = 1, 2, 4, 5
_OPT_TYPE, _IN, _ANY_CLASS, _AXFR, _IXFR = 41, 1, 255, 252, 251
# Our own EDNS buffer size (DNS flag day 2020): large enough for most answers, small enough not
# to fragment. Answers to clients without EDNS stop at 512 bytes (RFC 1035).
UDP_PAYLOAD = 1232
_OPT = struct.pack("!BHHIH", 0, _OPT_TYPE, UDP_PAYLOAD, 0, 0)
_OPT_BADVERS = struct.pack("!BHHIH", 0, _OPT_TYPE, UDP_PAYLOAD, 1 << 24, 0)  # extended rcode 16
# The memo holds finished replies keyed by query bytes. Bounded in bytes, not only entries:
# resolvers that randomise letter case (0x20) make every query a new key. When full it is
# emptied, and the names still asked for fill it again.
MEMO_BYTES = 32 * 1024 * 1024
MEMO_MAX_QUERY = 512  # longer queries (large EDNS options) are answered, never memoised

QTYPE_NAMES = {1: "A", 2: "NS", 6: "SOA", 16: "TXT", 28: "AAAA", 33: "SRV", 255: "ANY"}
RCODE_NAMES = {0: "NOERROR", 1: "FORMERR", 2: "SERVFAIL", 3: "NXDOMAIN", 4: "NOTIMP", 5: "REFUSED", 16: "BADVERS"}


# Finished replies without their id (one per pre-rotated order) and the (qtype, rcode) they count as.
_Answered = tuple[tuple[bytes, ...], tuple[str, str]]


class _Drop(Exception):
    """Not worth an answer: too short to hold an id, or a response rather than a query."""


@dataclass(frozen=True, slots=True)
class _Query:
    flags: int
    question: bytes  # the client's question, echoed as sent (0x20 mixed case included)
    qname: bytes  # lowercase wire name: the lookup key
    qtype: int
    qclass: int
    edns_payload: int | None
    edns_version: int


class _Entry:
    """A memoised reply: one finished reply (without id) per pre-rotated order, and a hit count."""

    __slots__ = ("hits", "replies", "stat")

    def __init__(self, replies: tuple[bytes, ...], stat: tuple[str, str]) -> None:
        self.replies, self.stat, self.hits = replies, stat, 0


class DnsResponder:
    """Turns query bytes into reply bytes for the store's current snapshot."""

    def __init__(self, *, store: SnapshotStore) -> None:
        self._store = store
        self._snapshot: Snapshot | None = None
        # One memo per transport: only UDP replies are truncated.
        self._udp: dict[bytes, _Entry] = {}
        self._tcp: dict[bytes, _Entry] = {}
        self._turn = 0
        self._memo_bytes = 0
        self._retired: Counter[tuple[str, str]] = Counter()

    def respond_udp(self, data: bytes) -> bytes | None:
        """The reply to one UDP query, or None when it deserves no reply. The hot path."""
        if self._store.current is not self._snapshot:
            self._forget(self._store.current)
        entry = self._udp.get(data[2:])
        if entry is None:
            entry = self._miss(self._udp, data, udp=True)
            if entry is None:
                return None
        entry.hits += 1
        replies = entry.replies
        if len(replies) == 1:
            return data[:2] + replies[0]
        self._turn += 1
        return data[:2] + replies[self._turn % len(replies)]

    def respond_tcp(self, data: bytes) -> bytes | None:
        """The reply to one query read from a TCP stream (never truncated)."""
        if self._store.current is not self._snapshot:
            self._forget(self._store.current)
        entry = self._tcp.get(data[2:]) or self._miss(self._tcp, data, udp=False)
        if entry is None:
            return None
        entry.hits += 1
        self._turn += 1
        return data[:2] + entry.replies[self._turn % len(entry.replies)]

    def counts(self) -> Counter[tuple[str, str]]:
        """Queries answered so far, by (query type, response code)."""
        total = Counter(self._retired)
        for memo in (self._udp, self._tcp):
            for entry in memo.values():
                total[entry.stat] += entry.hits
        return total

    def _forget(self, snapshot: Snapshot | None) -> None:
        """Empty the memo (a new snapshot, or full); the hit counts are kept."""
        for memo in (self._udp, self._tcp):
            for entry in memo.values():
                self._retired[entry.stat] += entry.hits
            memo.clear()
        self._memo_bytes = 0
        self._snapshot = snapshot

    def _miss(self, memo: dict[bytes, _Entry], data: bytes, *, udp: bool) -> _Entry | None:
        if len(data) < 12:
            return None
        answered = self._answer(data, self._snapshot, udp)
        if answered is None:
            return None
        entry = _Entry(*answered)
        if len(data) > MEMO_MAX_QUERY:
            self._retired[entry.stat] += 1  # counted here, as it is not kept
            return entry
        cost = len(data) + sum(map(len, entry.replies)) + 200  # + dict and object overhead
        if self._memo_bytes + cost > MEMO_BYTES:
            self._forget(self._snapshot)
        memo[data[2:]] = entry
        self._memo_bytes += cost
        return entry

    def _answer(self, data: bytes, snapshot: Snapshot | None, udp: bool) -> _Answered | None:
        try:
            query = _parse(data)
        except _Drop:
            return None
        except _Refusal as refusal:
            return (refusal.reply,), ("other", RCODE_NAMES[refusal.rcode])
        qtype_name = QTYPE_NAMES.get(query.qtype, "other")
        if query.edns_version != 0:
            return (_reply(query, 16, 0, None, udp),), (qtype_name, "BADVERS")
        if snapshot is None:
            return (_reply(query, SERVFAIL, 0, None, udp),), (qtype_name, "SERVFAIL")
        answer = _lookup(snapshot.view(DNS), query)
        if answer is None:
            return (_reply(query, REFUSED, 0, None, udp),), (qtype_name, "REFUSED")
        replies = tuple(_reply(query, answer.rcode, _AA, answer.variant(turn), udp) for turn in range(answer.turns))
        return replies, (qtype_name, RCODE_NAMES[answer.rcode])


class _Refusal(Exception):
    """A query we answer with an error code and no question: FORMERR or NOTIMP."""

    def __init__(self, data: bytes, rcode: int) -> None:
        flags = struct.unpack_from("!H", data, 2)[0]
        opcode_and_rd = flags & 0x7900
        self.rcode = rcode
        self.reply = _COUNTS.pack(_QR | opcode_and_rd | rcode, 0, 0, 0, 0)


def _lookup(answers: DnsAnswers, query: _Query) -> Answer | None:
    if query.qclass not in (_IN, _ANY_CLASS) or query.qtype in (_AXFR, _IXFR):
        return None  # no CHAOS names, no zone transfers: REFUSED
    return answers.lookup(query.qname, query.qtype)


def _reply(query: _Query, rcode: int, aa: int, variant: Variant | None, udp: bool) -> bytes:
    """The reply without its id: header, the client's question, the rendered sections, OPT."""
    flags = _QR | aa | (query.flags & _RD) | (rcode & 0xF)
    edns = query.edns_payload is not None
    opt = (_OPT_BADVERS if rcode == 16 else _OPT) if edns else b""
    ancount = nscount = arcount = 0
    body = b""
    if variant is not None:
        ancount, nscount, arcount, body = variant.ancount, variant.nscount, variant.arcount, variant.body
    reply = _COUNTS.pack(flags, 1, ancount, nscount, arcount + edns) + query.question + body + opt
    limit = max(512, min(query.edns_payload or 512, UDP_PAYLOAD))
    if udp and len(reply) + 2 > limit and variant is not None:
        # First drop the additional section (glue): that alone sets no TC (RFC 2181 9).
        essential = variant.without_additional()
        reply = _COUNTS.pack(flags, 1, ancount, nscount, int(edns)) + query.question + essential + opt
    if udp and len(reply) + 2 > limit:
        # Too big for this client over UDP: TC tells it to ask again over TCP (RFC 7766).
        return _COUNTS.pack(flags | _TC, 1, 0, 0, int(edns)) + query.question + opt
    return reply


def _parse(data: bytes) -> _Query:
    _, flags, qdcount, ancount, nscount, arcount = _HEADER.unpack_from(data)
    if flags & _QR:
        raise _Drop
    if (flags >> 11) & 0xF:
        raise _Refusal(data, NOTIMP)
    if qdcount != 1 or ancount or nscount or arcount > 1:
        raise _Refusal(data, FORMERR)
    end = _question_end(data)
    if end is None:
        return _parse_compressed(data)
    if not arcount and len(data) != end:
        raise _Refusal(data, FORMERR)  # bytes after the question: not one query
    qname = data[12 : end - 4].lower()
    qtype, qclass = struct.unpack_from("!HH", data, end - 4)
    payload, version = _edns(data, end) if arcount else (None, 0)
    return _Query(flags, data[12:end], qname, qtype, qclass, payload, version)


def _question_end(data: bytes) -> int | None:
    """Offset just past the question; None when its name uses compression (dnslib's case)."""
    offset = 12
    while True:
        if offset >= len(data):
            raise _Refusal(data, FORMERR)
        length = data[offset]
        if length == 0:
            break
        if length & 0xC0 == 0xC0:
            return None
        # A name is at most 255 octets with its root label (RFC 1035 3.1): this label's length
        # byte, its octets and the root must fit.
        if length > 63 or offset - 12 + length + 2 > 255:
            raise _Refusal(data, FORMERR)
        offset += length + 1
    end = offset + 5
    if end > len(data):
        raise _Refusal(data, FORMERR)
    return end


def _edns(data: bytes, offset: int) -> tuple[int, int]:
    """UDP payload size and version from the one additional record, which must be an OPT."""
    if len(data) < offset + 11 or data[offset] != 0:
        raise _Refusal(data, FORMERR)
    rtype, payload, ttl, rdlength = struct.unpack_from("!HHIH", data, offset + 1)
    if rtype != _OPT_TYPE or len(data) != offset + 11 + rdlength:
        raise _Refusal(data, FORMERR)
    return payload, (ttl >> 16) & 0xFF


def _parse_compressed(data: bytes) -> _Query:
    try:
        record = DNSRecord.parse(data)
    except Exception as exc:
        raise _Refusal(data, FORMERR) from exc
    question = record.q
    labels = [bytes(label) for label in question.qname.label]
    if any(len(label) > 63 for label in labels):
        raise _Refusal(data, FORMERR)
    name = b"".join(bytes([len(label)]) + label for label in labels) + b"\0"
    if len(name) > 255:
        raise _Refusal(data, FORMERR)
    opt = next((rr for rr in record.ar if rr.rtype == _OPT_TYPE), None)
    return _Query(
        flags=struct.unpack_from("!H", data, 2)[0],
        question=name + struct.pack("!HH", question.qtype, question.qclass),
        qname=name.lower(),
        qtype=question.qtype,
        qclass=question.qclass,
        edns_payload=opt.rclass if opt else None,
        edns_version=(opt.ttl >> 16) & 0xFF if opt else 0,
    )

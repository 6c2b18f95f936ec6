"""Theory of operation: the hot path -- plain queries parsed and A answers built in bytes.

Almost every query a container sends is "A of one name, one question, maybe an
EDNS0 OPT record".  Parsing that and writing the positive answer by hand costs a
few microseconds, against ~100 through dnslib.  ``parse_simple_query`` accepts
only that exact shape (uncompressed name of plain ASCII labels, no answer or
authority records, at most one OPT and nothing after it) and returns None for
anything else, which the resolver then handles with dnslib; so the fast path
never has to be right about an unusual packet, only about the common one.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

_HEADER = struct.Struct("!HHHHHH")
_HEADER_AFTER_ID = struct.Struct("!HHHHH")
_RR_FIXED = struct.Struct("!HHIH")
_ALLOWED = frozenset(b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_")
CLASSIC_UDP = 512


@dataclass(frozen=True, slots=True)
class SimpleQuery:
    """Everything of the query but its ID, so one parse serves every query
    with the same bytes after the ID (the resolver memoizes it)."""

    flags: int
    qname: str
    """Canonical (lower case, absolute)."""
    qtype: int
    qclass: int
    question_end: int
    edns_size: int | None
    """The OPT record's UDP payload size, or None without EDNS0."""

    def buffer_size(self, max_udp: int) -> int:
        if self.edns_size is None:
            return CLASSIC_UDP
        return max(CLASSIC_UDP, min(self.edns_size, max_udp))


def parse_simple_query(data: bytes) -> SimpleQuery | None:
    """The query if it has the common shape (see the module doc), else None."""
    if len(data) < 17:
        return None
    _ident, flags, qdcount, ancount, nscount, arcount = _HEADER.unpack_from(data)
    # QR=0, opcode QUERY, Z bit clear; one question, nothing else but an OPT.
    if flags & 0xF840 or qdcount != 1 or ancount or nscount or arcount > 1:
        return None
    labels: list[str] = []
    pos = 12
    while True:
        if pos >= len(data):
            return None
        length = data[pos]
        if length == 0:
            pos += 1
            break
        if length > 63 or pos + 1 + length > len(data):
            return None
        label = data[pos + 1 : pos + 1 + length]
        if not _ALLOWED.issuperset(label):
            return None
        labels.append(label.decode("ascii").lower())
        pos += 1 + length
    if not labels or pos + 4 > len(data):
        return None
    qtype, qclass = struct.unpack_from("!HH", data, pos)
    pos += 4
    question_end = pos
    edns_size = None
    if arcount:
        # Exactly: root name, type OPT, class = size, ttl = ext-rcode/version/flags.
        if pos + 11 > len(data) or data[pos] != 0:
            return None
        rtype, rclass, ttl, rdlength = _RR_FIXED.unpack_from(data, pos + 1)
        if rtype != 41 or (ttl >> 16) & 0xFF or pos + 11 + rdlength != len(data):
            return None
        edns_size = rclass
    elif pos != len(data):
        return None
    name = ".".join(labels) + "."
    if len(name) > 254:
        return None
    return SimpleQuery(flags, name, qtype, qclass, question_end, edns_size)


def positive_a_answer(query: bytes, simple: SimpleQuery, addresses: list[int], ttl: int,
                      max_udp: int, limit: int) -> tuple[bytes, bool]:
    """The authoritative answer listing ``addresses`` in the given order, and
    whether it had to be truncated to fit ``limit`` bytes (then it is empty, TC)."""
    # QR, AA, RA set; RD copied; opcode 0; rcode NOERROR.
    flags = 0x8400 | 0x0080 | (simple.flags & 0x0100)
    opt = b"\x00" + _RR_FIXED.pack(41, max_udp, 0, 0) if simple.edns_size is not None else b""
    question = query[12 : simple.question_end]
    rr_fixed = _RR_FIXED.pack(1, 1, ttl, 4)
    body = b"".join(b"\xc0\x0c" + rr_fixed + a.to_bytes(4, "big") for a in addresses)
    arcount = 1 if opt else 0
    size = 12 + len(question) + len(body) + len(opt)
    if size > limit:
        header = query[:2] + _HEADER_AFTER_ID.pack(flags | 0x0200, 1, 0, 0, arcount)
        return header + question + opt, True
    header = query[:2] + _HEADER_AFTER_ID.pack(flags, 1, len(addresses), 0, arcount)
    return header + question + body + opt, False

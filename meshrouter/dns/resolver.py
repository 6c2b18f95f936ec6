"""Theory of operation: the resolver -- query bytes in, an outcome out, no I/O.

``Resolver.resolve(query, view, rng, tcp=...)`` decides everything the server
does with a packet: answer it (``Answer``), forward it upstream (``Forward``),
or drop it (``Drop``: undecodable, or a response rather than a query).  Rules:

* Names under the domain (compared case-insensitively; the question is echoed
  as asked) are ours.  A (and ANY) queries get every live address of the name,
  shuffled per query with the caller's ``rng`` (load balancing, as Weave).
  Other types of an existing name -- including empty non-terminals -- get
  NOERROR with no answers (NODATA); an unknown name gets NXDOMAIN.  Negative
  answers carry the zone's SOA in the authority section (RFC 2308), so clients
  cache them for ``ttl`` seconds only.  SOA at the apex is answered.
* PTR for an address some live record has is answered from the records; for an
  address inside ``reverse_networks`` (the overlay) but unknown, NXDOMAIN from
  us; any other reverse name is forwarded like an outside name.
* Everything else is forwarded to the upstreams (the server's job; it answers
  SERVFAIL when they all fail).
* Size: a UDP answer fits the client's EDNS0 buffer (capped at ``max_udp``),
  else 512 bytes; a larger one goes out empty with TC set so the client retries
  over TCP (65,535 bytes).  EDNS0 is echoed when the query had it; EDNS
  versions above 0 get BADVERS.
* Not a query (QR set) -> dropped; opcode other than QUERY -> NOTIMP; not one
  question -> FORMERR; class other than IN/ANY under our names -> REFUSED.

The common case -- a positive A answer to a plain query -- is built directly in
bytes (``fastpath.py``), about 10x faster than through dnslib; everything else
uses dnslib.  A property test checks that both paths give the same answers.
"""

from __future__ import annotations

import ipaddress
import random
import struct
from dataclasses import dataclass

from dnslib import (
    EDNS0,
    OPCODE,
    PTR,
    QTYPE,
    RCODE,
    RR,
    SOA,
    A,
    DNSHeader,
    DNSLabel,
    DNSQuestion,
    DNSRecord,
)
from dnslib.dns import DNSError

from .fastpath import SimpleQuery, parse_simple_query, positive_a_answer
from .names import canonical_name, in_domain, parse_reverse_name
from .view import NameView

DEFAULT_TTL = 5
DEFAULT_MAX_UDP = 4096
CLASSIC_UDP = 512
MAX_TCP = 65_535
MAX_QUERY = 4096
RCODE_BADVERS = 16
MEMO_SIZE = 8192
CLASS_IN = 1
CLASS_ANY = 255


@dataclass(frozen=True, slots=True)
class Answer:
    data: bytes
    rcode: str
    """NOERROR, NXDOMAIN, NODATA (a NOERROR without answers), SERVFAIL, ..."""
    truncated: bool = False


@dataclass(frozen=True, slots=True)
class Forward:
    """Send ``query`` (the client's bytes, unchanged) to the upstream servers."""

    query: bytes
    qname: str


@dataclass(frozen=True, slots=True)
class Drop:
    reason: str


Outcome = Answer | Forward | Drop


class Resolver:
    """Answers for one domain from a ``NameView``; pure and reusable."""

    def __init__(
        self,
        domain: str,
        *,
        ttl: int = DEFAULT_TTL,
        reverse_networks: tuple[str, ...] = (),
        max_udp: int = DEFAULT_MAX_UDP,
    ) -> None:
        self.domain = canonical_name(domain)
        self.ttl = ttl
        self.max_udp = max(CLASSIC_UDP, min(max_udp, MAX_TCP))
        self.reverse_networks = tuple(ipaddress.IPv4Network(n, strict=False)
                                      for n in reverse_networks)
        self._memo: dict[tuple[bytes, bool], Answer | str | SimpleQuery] = {}
        """Outcomes by (query bytes after the ID, tcp) for ``_memo_view``: an
        Answer holds the reply without its ID, a str the qname to forward, a
        SimpleQuery the parse of a query whose answer is shuffled each time."""
        self._memo_view: NameView | None = None

    # ------------------------------------------------------------ entry point

    def resolve(self, query: bytes, view: NameView, rng: random.Random, *,
                tcp: bool = False, fast: bool = True) -> Outcome:
        """Decide what to do with one packet; never raises on any input.

        With ``fast``, outcomes that do not depend on ``rng`` are memoized per
        view, keyed by the query's bytes after its ID: a repeated question
        (NXDOMAIN for search-list expansions, a one-address name, a forward)
        costs a dict lookup.  A new view (any change) starts a new memo.
        """
        if len(query) > MAX_QUERY:
            return Drop("oversized")
        query = bytes(query)
        if not fast:
            return self._general(query, view, rng, tcp)
        if view is not self._memo_view:
            self._memo.clear()
            self._memo_view = view
        key = (query[2:], tcp)
        hit = self._memo.get(key)
        simple: SimpleQuery | None
        if hit is not None:
            if isinstance(hit, str):
                return Forward(query, hit)
            if isinstance(hit, Answer):
                return Answer(query[:2] + hit.data, hit.rcode, hit.truncated)
            simple = hit
        else:
            simple = parse_simple_query(query)
        if simple is not None and simple.qtype == 1 and simple.qclass == 1:
            addresses = view.addresses.get(simple.qname)
            if addresses:
                limit = MAX_TCP if tcp else simple.buffer_size(self.max_udp)
                data, truncated = positive_a_answer(
                    query, simple, self._shuffled(addresses, rng), self.ttl,
                    self.max_udp, limit)
                outcome: Outcome = Answer(data, "NOERROR", truncated)
                if len(addresses) > 1:
                    self._remember(key, simple)  # shuffled per query: keep the parse only
                else:
                    self._remember(key, outcome)
                return outcome
        outcome = self._general(query, view, rng, tcp)
        if isinstance(outcome, Forward | Answer) and not self._shuffles(simple, query, view):
            self._remember(key, outcome)
        return outcome

    def _remember(self, key: tuple[bytes, bool], outcome: Outcome | SimpleQuery) -> None:
        if len(self._memo) >= MEMO_SIZE:
            self._memo.clear()
        if isinstance(outcome, SimpleQuery):
            self._memo[key] = outcome
        elif isinstance(outcome, Forward):
            self._memo[key] = outcome.qname
        elif isinstance(outcome, Answer):
            self._memo[key] = Answer(outcome.data[2:], outcome.rcode, outcome.truncated)

    def _shuffles(self, simple: SimpleQuery | None, query: bytes, view: NameView) -> bool:
        """Could the answer to ``query`` differ from one call to the next?"""
        if simple is None:
            return True  # unusual shape: not worth proving; not memoized
        return simple.qtype in (QTYPE.A, QTYPE.ANY) and len(
            view.addresses.get(simple.qname, ())) > 1

    def _general(self, query: bytes, view: NameView, rng: random.Random,
                 tcp: bool) -> Outcome:
        try:
            request = DNSRecord.parse(query)
        except Exception:  # dnslib raises many types on hostile input; all mean "bad"
            return Drop("malformed")
        if request.header.qr:
            return Drop("not a query")
        try:
            return self._answer(request, query, view, rng, tcp)
        except (DNSError, ValueError, UnicodeError, struct.error):
            return Drop("malformed")  # a question dnslib parsed but cannot render back

    def error(self, query: bytes, rcode: str) -> bytes | None:
        """An empty answer with ``rcode`` (SERVFAIL, REFUSED) for ``query``, if it decodes."""
        try:
            request = DNSRecord.parse(query)
        except Exception:  # undecodable: nothing to answer
            return None
        if request.header.qr:
            return None
        reply = self._reply(request, aa=False)
        reply.header.rcode = getattr(RCODE, rcode)
        return bytes(reply.pack())

    # ------------------------------------------------------------ the general path

    def _answer(self, request: DNSRecord, raw: bytes, view: NameView, rng: random.Random,
                tcp: bool) -> Outcome:
        opt = next((rr for rr in request.ar if rr.rtype == QTYPE.OPT), None)
        limit = MAX_TCP if tcp else self._buffer(opt)
        if request.header.opcode != OPCODE.QUERY:
            return self._finish(self._reply(request, aa=False), RCODE.NOTIMP, opt, limit)
        if opt is not None and (opt.ttl >> 16) & 0xFF > 0:
            reply = self._reply(request, aa=False)
            reply.add_ar(EDNS0(udp_len=self.max_udp, ext_rcode=RCODE_BADVERS >> 4))
            return Answer(bytes(reply.pack()), "BADVERS")
        if len(request.questions) != 1:
            return self._finish(self._reply(request, aa=False), RCODE.FORMERR, opt, limit)
        question = request.questions[0]
        qname = str(question.qname).lower()
        if not in_domain(qname, self.domain):
            address = parse_reverse_name(qname)
            if address is None or not (address in view.names or self._is_overlay(address)):
                return Forward(raw, qname)
        reply = self._reply(request, aa=True)
        if question.qclass not in (CLASS_IN, CLASS_ANY):
            return self._finish(reply, RCODE.REFUSED, opt, limit)
        if in_domain(qname, self.domain):
            return self._forward_zone(reply, question, qname, view, rng, opt, limit)
        return self._reverse_zone(reply, question, qname, view, opt, limit)

    def _forward_zone(self, reply: DNSRecord, question: DNSQuestion, qname: str,
                      view: NameView, rng: random.Random, opt: RR | None,
                      limit: int) -> Answer:
        addresses = view.addresses.get(qname, ())
        if question.qtype in (QTYPE.A, QTYPE.ANY) and addresses:
            for address in self._shuffled(addresses, rng):
                reply.add_answer(RR(question.qname, QTYPE.A, ttl=self.ttl,
                                    rdata=A(ipaddress.IPv4Address(address).exploded)))
            return self._finish(reply, RCODE.NOERROR, opt, limit)
        if question.qtype == QTYPE.SOA and qname == self.domain:
            reply.add_answer(self._soa(self.domain, view))
            return self._finish(reply, RCODE.NOERROR, opt, limit)
        reply.add_auth(self._soa(self.domain, view))
        rcode = RCODE.NOERROR if qname in view.existing else RCODE.NXDOMAIN
        return self._finish(reply, rcode, opt, limit)

    def _reverse_zone(self, reply: DNSRecord, question: DNSQuestion, qname: str,
                      view: NameView, opt: RR | None, limit: int) -> Answer:
        address = parse_reverse_name(qname)
        names = view.names.get(address, ()) if address is not None else ()
        if names and question.qtype in (QTYPE.PTR, QTYPE.ANY):
            for name in names:
                reply.add_answer(RR(question.qname, QTYPE.PTR, ttl=self.ttl, rdata=PTR(name)))
            return self._finish(reply, RCODE.NOERROR, opt, limit)
        reply.add_auth(self._soa(self._reverse_zone_name(address), view))
        return self._finish(reply, RCODE.NOERROR if names else RCODE.NXDOMAIN, opt, limit)

    # ------------------------------------------------------------ helpers

    def _reply(self, request: DNSRecord, *, aa: bool) -> DNSRecord:
        header = DNSHeader(id=request.header.id, qr=1, aa=int(aa), ra=1,
                           rd=request.header.rd, opcode=request.header.opcode)
        reply = DNSRecord(header)
        for question in request.questions:
            reply.add_question(question)
        return reply

    def _finish(self, reply: DNSRecord, rcode: int, opt: RR | None, limit: int) -> Answer:
        reply.header.rcode = rcode
        if opt is not None:
            reply.add_ar(EDNS0(udp_len=self.max_udp))
        data = bytes(reply.pack())
        truncated = False
        if len(data) > limit:
            reply.rr = []
            reply.auth = []
            reply.header.tc = 1
            data = bytes(reply.pack())
            truncated = True
        name = RCODE.get(rcode)
        if rcode == RCODE.NOERROR and not reply.rr and not truncated:
            name = "NODATA"
        return Answer(data, str(name), truncated)

    def _buffer(self, opt: RR | None) -> int:
        if opt is None:
            return CLASSIC_UDP
        return max(CLASSIC_UDP, min(int(opt.rclass), self.max_udp))

    def _soa(self, zone: str, view: NameView) -> RR:
        return RR(zone, QTYPE.SOA, ttl=self.ttl, rdata=SOA(
            DNSLabel("ns." + self.domain), DNSLabel("hostmaster." + self.domain),
            (view.serial & 0xFFFF_FFFF, 3600, 600, 86_400, self.ttl)))

    def _is_overlay(self, address: int) -> bool:
        ip = ipaddress.IPv4Address(address)
        return any(ip in network for network in self.reverse_networks)

    def _reverse_zone_name(self, address: int | None) -> str:
        """The reverse zone we are authoritative for, at an octet boundary."""
        if address is not None:
            ip = ipaddress.IPv4Address(address)
            for network in self.reverse_networks:
                if ip in network:
                    octets = str(network.network_address).split(".")[: network.prefixlen // 8]
                    return ".".join([*reversed(octets), "in-addr", "arpa"]) + "."
        return "in-addr.arpa."

    @staticmethod
    def _shuffled(addresses: tuple[int, ...], rng: random.Random) -> list[int]:
        order = list(addresses)
        if len(order) > 1:
            rng.shuffle(order)
        return order

"""Queries are counted by type, read from the question's bytes without trusting them."""

from __future__ import annotations

from dnslib import DNSRecord
from hypothesis import given
from hypothesis import strategies as st

from meshrouter.dns.server import query_type


def test_types_of_real_queries() -> None:
    assert query_type(DNSRecord.question("web.mesh.local.", "A").pack()) == "A"
    assert query_type(DNSRecord.question("web.mesh.local.", "AAAA").pack()) == "AAAA"
    assert query_type(DNSRecord.question("5.0.32.10.in-addr.arpa.", "PTR").pack()) == "PTR"
    # An unknown code is still counted, by number.
    raw = bytearray(DNSRecord.question("x.", "A").pack())
    raw[-4:-2] = (65000).to_bytes(2, "big")
    assert query_type(bytes(raw)) == "TYPE65000"


def test_truncated_and_compressed_questions_are_malformed() -> None:
    packed = DNSRecord.question("web.mesh.local.", "A").pack()
    assert query_type(packed[:20]) == "malformed"
    assert query_type(packed[:12]) == "malformed"
    assert query_type(packed[:12] + b"\xc0\x0c\x00\x01\x00\x01") == "malformed"


@given(st.binary(max_size=600))
def test_any_bytes_give_a_label_never_an_exception(data: bytes) -> None:
    assert isinstance(query_type(data), str)


def test_the_server_counts_each_query_by_its_own_type_and_its_memo_is_bounded() -> None:
    import random

    from meshrouter.dns.access import ClientFilter
    from meshrouter.dns.resolver import Resolver
    from meshrouter.dns.server import QTYPE_MEMO, DnsServer
    from meshrouter.dns.view import NameView

    async def no_upstreams() -> list[tuple[str, int]]:
        return []

    server = DnsServer(Resolver("mesh.local."), lambda: NameView("mesh.local."), random.Random(1),
                       listen=("127.0.0.1", 0), upstreams=no_upstreams, timeout=1.0,
                       client_filter=ClientFilter([]))
    a, aaaa = (DNSRecord.question("web.mesh.local.", t) for t in ("A", "AAAA"))
    for ident, record in ((1, a), (2, aaaa), (3, a), (4, aaaa), (5, a)):
        record.header.id = ident
        server._count_query(bytes(record.pack()))
    big = DNSRecord.question("x" * 60 + ".mesh.local.", "TXT")
    server._count_query(bytes(big.pack()) + b"\0" * 600)  # too big to memoize: still counted
    assert server.stats.queries == {"A": 3, "AAAA": 2, "TXT": 1}
    for i in range(QTYPE_MEMO + 10):
        server._count_query(bytes(DNSRecord.question(f"n{i}.mesh.local.", "PTR").pack()))
    assert len(server._qtypes) <= QTYPE_MEMO and server.stats.queries["PTR"] == QTYPE_MEMO + 10

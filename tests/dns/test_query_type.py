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

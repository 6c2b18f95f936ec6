"""Canonical names, qualification under the domain, reverse names."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from meshrouter.dns.names import (
    canonical_name,
    format_ipv4,
    in_domain,
    parse_ipv4,
    parse_reverse_name,
    qualify,
    reverse_name,
)
from meshrouter.dns.view import NameView
from meshrouter.errors import InvalidRequestError

D = "mesh.local."


@given(st.integers(0, 0xFFFF_FFFF))
def test_reverse_name_round_trip(address: int) -> None:
    name = reverse_name(address)
    assert parse_reverse_name(name) == address
    assert name == ".".join(reversed(format_ipv4(address).split("."))) + ".in-addr.arpa."


@pytest.mark.parametrize("name", ["1.2.3.in-addr.arpa.", "256.1.1.1.in-addr.arpa.",
                                  "01.1.1.1.in-addr.arpa.", "a.1.1.1.in-addr.arpa.",
                                  "1.1.1.1.ip6.arpa.", "1.1.1.1.1.in-addr.arpa."])
def test_partial_or_odd_reverse_names_are_not_addresses(name: str) -> None:
    assert parse_reverse_name(name) is None


def test_canonical_names() -> None:
    assert canonical_name("Web.Mesh.Local") == "web.mesh.local."
    assert canonical_name("_sip._tcp.x.") == "_sip._tcp.x."
    for bad in ("", ".", "a..b", "-a", "a-", "a b", "é.local", "a" * 64, ("a." * 127) + "a"):
        with pytest.raises(InvalidRequestError):
            canonical_name(bad)


def test_qualify_relative_names_and_refuse_absolute_ones_outside() -> None:
    assert qualify("web", D) == "web.mesh.local."
    assert qualify("web.prod", D) == "web.prod.mesh.local."
    assert qualify("WEB.mesh.local", D) == "web.mesh.local."
    assert qualify("web.mesh.local.", D) == "web.mesh.local."
    with pytest.raises(InvalidRequestError):
        qualify("web.example.com.", D)
    with pytest.raises(InvalidRequestError):
        qualify("mesh.local.", D)
    assert in_domain("a.mesh.local.", D) and not in_domain("amesh.local.", D)


def test_ipv4_parsing() -> None:
    assert parse_ipv4(" 10.32.0.1 ") == 0x0A200001
    for bad in ("10.32.0", "::1", "10.32.0.256", "web"):
        with pytest.raises(InvalidRequestError):
            parse_ipv4(bad)


def test_view_indexes_names_addresses_and_empty_non_terminals() -> None:
    view = NameView.build(D, [("a.b.c.mesh.local.", 1), ("a.b.c.mesh.local.", 1),
                              ("x.mesh.local.", 1), ("out.example.", 2), ("mesh.local.", 3)], 5)
    assert view.addresses == {"a.b.c.mesh.local.": (1,), "x.mesh.local.": (1,)}
    assert view.names == {1: ("a.b.c.mesh.local.", "x.mesh.local.")}
    assert view.existing == {"mesh.local.", "c.mesh.local.", "b.c.mesh.local.",
                             "a.b.c.mesh.local.", "x.mesh.local."}

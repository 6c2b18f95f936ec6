"""The pure part of expose: state file round trip and refusals, requests, the
automatic decision, the host's container ID."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from meshrouter.codec import pack
from meshrouter.endpoints.model import check_container_id
from meshrouter.errors import InvalidRequestError, StateFileError
from meshrouter.expose.state import (
    MODES,
    ExposeState,
    auto_wanted,
    host_container_id,
    parse_cidr,
    parse_expose_request,
    same_address,
)
from meshrouter.names import PeerName

cidrs = st.builds(lambda a, b, c, p: f"10.{a}.{b}.{c}/{p}", st.integers(0, 255),
                  st.integers(0, 255), st.integers(1, 254), st.integers(8, 24))


@given(st.sampled_from(MODES), st.none() | cidrs, st.none() | cidrs)
def test_state_round_trips(mode: str, cidr: str | None, asked: str | None) -> None:
    state = ExposeState(mode, cidr, asked)  # type: ignore[arg-type]
    assert ExposeState.decode(state.encode()) == state


@pytest.mark.parametrize("blob", [
    b"\x93garbage",
    pack(["not", "a", "map"]),
    pack({"mode": "sideways", "cidr": "", "asked": ""}),
    pack({"mode": "exposed", "cidr": "10.0.0.1", "asked": ""}),  # no prefix
    pack({"mode": "exposed", "cidr": 5, "asked": ""}),
    pack({"mode": "exposed", "cidr": "x" * 2000}),
])
def test_a_damaged_state_file_refuses_to_start(blob: bytes) -> None:
    with pytest.raises(StateFileError, match="expose state"):
        ExposeState.decode(blob)


def test_the_host_container_id_is_a_valid_container_id_per_peer() -> None:
    cid = host_container_id(PeerName(0xAABBCCDDEEFF))
    assert cid == "host-aabbccddeeff"
    check_container_id(cid)  # raises if the dataplane would refuse it
    assert host_container_id(PeerName(1)) != cid


@pytest.mark.parametrize(("body", "expected"), [
    ({}, None), ({"ip": ""}, None), ({"ip": None}, None),
    ({"ip": "10.32.0.9/12"}, "10.32.0.9/12"), ({"ip": " 10.32.0.9/12"}, "10.32.0.9/12"),
])
def test_expose_requests(body: dict[str, object], expected: str | None) -> None:
    assert parse_expose_request(body) == expected


@pytest.mark.parametrize(("body", "why"), [
    ({"ip": "10.32.0.9"}, "prefix length"),
    ({"ip": "10.32.0.0/12"}, "network or broadcast"),
    ({"ip": "10.47.255.255/12"}, "network or broadcast"),
    ({"ip": "127.0.0.5/8"}, "usable unicast"),
    ({"ip": "fd00::1/64"}, "not IPv4"),
    ({"ip": "10.0.0.1/31"}, "out of range"),
    ({"ip": "banana"}, "CIDR form"),
    ({"ip": 7}, "must be a string"),
    ({"ip": "10.32.0.9/12", "name": "x"}, "unknown expose field"),
])
def test_bad_expose_requests_say_why(body: dict[str, object], why: str) -> None:
    with pytest.raises(InvalidRequestError, match=why):
        parse_expose_request(body)


def test_parse_cidr_keeps_the_prefix() -> None:
    assert str(parse_cidr("10.32.0.1/12").network) == "10.32.0.0/12"


@pytest.mark.parametrize(("mode", "kind", "dns", "ring", "wanted"), [
    ("auto", "ovs-netdev", True, True, True),
    ("auto", "ovs", True, True, True),
    ("auto", "ovs-system", True, False, False),   # never founds a ring
    ("auto", "memory", True, True, False),        # the simulator
    ("auto", "none", True, True, False),
    ("auto", "ovs", False, True, False),          # --no-dns or --dns-listen
    ("hidden", "ovs", True, True, False),         # the user said hide
    ("exposed", "ovs", True, True, False),        # the user's choice, not automatic
])
def test_automatic_exposure(mode: str, kind: str, dns: bool, ring: bool, wanted: bool) -> None:
    state = ExposeState(mode)  # type: ignore[arg-type]
    assert auto_wanted(state, datapath_kind=kind, dns_wants=dns, ring_ready=ring) is wanted


def test_same_address_ignores_the_prefix() -> None:
    assert same_address("10.32.0.1/12", "10.32.0.1")
    assert not same_address("10.32.0.1/12", "10.32.0.2/12")
    assert same_address(None, None) and not same_address("10.32.0.1", None)

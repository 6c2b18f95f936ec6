"""``--ipalloc-init`` parsing (founding modes) and the allocation range (``--ipalloc-range``)."""

from __future__ import annotations

import ipaddress

import pytest

from meshrouter.errors import ConfigError, InvalidRequestError, IpamError
from meshrouter.ipam.address_range import DEFAULT_RANGE, AddressRange, overlapping_route
from meshrouter.ipam.founding import CONSENSUS, OBSERVER, SEED, FoundingMode, parse_founding
from meshrouter.names import PeerName

A = PeerName(0x5A0000000001)
B = PeerName(0x5A0000000002)
C = PeerName(0x5A0000000003)


# --- founding modes ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "initial_peers", "electors", "quorum"),
    [
        (None, 0, 1, 1),
        (None, 2, 3, 2),
        ("", 3, 4, 3),
        ("   ", 4, 5, 3),
        ("consensus", 2, 3, 2),
        ("consensus=", 5, 6, 4),
        ("consensus=1", 9, 1, 1),
        ("consensus=2", 0, 2, 2),
        ("consensus=3", 0, 3, 2),
        ("consensus=4", 0, 4, 3),
        ("consensus=5", 0, 5, 3),
        (" consensus=7 ", 0, 7, 4),
        ("consensus=4096", 0, 4096, 2049),
    ],
)
def test_consensus_electors_and_quorum(
    text: str | None, initial_peers: int, electors: int, quorum: int
) -> None:
    mode = parse_founding(text, initial_peers)
    assert mode == FoundingMode(CONSENSUS, electors=electors)
    assert mode.kind == CONSENSUS
    assert mode.electors == electors
    assert mode.quorum == quorum
    assert mode.seeds == ()
    assert mode.describe() == f"consensus of {electors} (quorum {quorum})"


def test_seed_names_are_sorted_and_deduplicated() -> None:
    mode = parse_founding(
        "seed=5a:00:00:00:00:03, 5a:00:00:00:00:01,5a:00:00:00:00:03,5A-00-00-00-00-02,", 7
    )
    assert mode == FoundingMode(SEED, seeds=(A, B, C))
    assert mode.describe() == "seed (3 founders)"


def test_seed_accepts_bare_hex_names() -> None:
    assert parse_founding("seed=5a0000000002", 0).seeds == (B,)


def test_observer() -> None:
    mode = parse_founding("observer", 3)
    assert mode == FoundingMode(OBSERVER)
    assert mode.seeds == ()
    assert mode.describe() == "observer"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("consensus=x", "--ipalloc-init consensus='x': N must be a number"),
        ("consensus=3.5", "--ipalloc-init consensus='3.5': N must be a number"),
        ("consensus=0", "--ipalloc-init consensus=0: N must be 1..4096"),
        ("consensus=-2", "--ipalloc-init consensus=-2: N must be 1..4096"),
        ("consensus=4097", "--ipalloc-init consensus=4097: N must be 1..4096"),
        ("seed=", "--ipalloc-init seed= needs at least one peer name"),
        ("seed= , ,", "--ipalloc-init seed= needs at least one peer name"),
        ("seed", "--ipalloc-init seed= needs at least one peer name"),
        ("seed=5a:00:00", "peer name '5a:00:00' must be 6 hex octets like 5a:1e:00:00:00:01"),
        ("seed=5a:00:00:00:00:01,zz:zz:zz:zz:zz:zz",
         "peer name 'zz:zz:zz:zz:zz:zz' is not hexadecimal"),
        ("observer=1", "--ipalloc-init 'observer=1': expected consensus[=N], "
                       "seed=NAME[,NAME...] or observer"),
        ("Consensus", "--ipalloc-init 'Consensus': expected consensus[=N], "
                      "seed=NAME[,NAME...] or observer"),
        ("bogus=3", "--ipalloc-init 'bogus=3': expected consensus[=N], "
                    "seed=NAME[,NAME...] or observer"),
    ],
)
def test_bad_founding_option_is_a_config_error(text: str, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_founding(text, 2)
    assert str(caught.value) == message


# --- the allocation range ---------------------------------------------------------------


def test_parse_default_range() -> None:
    r = AddressRange.parse(DEFAULT_RANGE)
    assert str(r) == "10.32.0.0/12"
    assert r.start == int(ipaddress.IPv4Address("10.32.0.0"))
    assert r.end == int(ipaddress.IPv4Address("10.47.255.255")) + 1
    assert r.size == 1 << 20
    assert r.end - r.start == r.size


def test_parse_strips_whitespace_and_accepts_a_slash_30() -> None:
    r = AddressRange.parse(" 192.168.7.0/30 ")
    assert (str(r), r.size) == ("192.168.7.0/30", 4)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("banana", "--ipalloc-range 'banana' is not a CIDR: "),
        ("10.32.0.0/33", "--ipalloc-range '10.32.0.0/33' is not a CIDR: "),
        ("10.32.0.1/12", "--ipalloc-range '10.32.0.1/12' is not a CIDR: "),
        ("fd00::/64", "--ipalloc-range 'fd00::/64': only IPv4 ranges are supported"),
        ("10.32.0.0/31", "--ipalloc-range '10.32.0.0/31' is too small (at least a /30)"),
        ("10.32.0.7/32", "--ipalloc-range '10.32.0.7/32' is too small (at least a /30)"),
        ("10.32.0.7", "--ipalloc-range '10.32.0.7' is too small (at least a /30)"),
    ],
)
def test_bad_range_is_a_config_error(text: str, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        AddressRange.parse(text)
    assert str(caught.value).startswith(message)


def test_host_bits_set_says_so() -> None:
    with pytest.raises(ConfigError, match="has host bits set"):
        AddressRange.parse("10.32.0.1/12")


def test_usable_excludes_network_broadcast_and_outside() -> None:
    r = AddressRange.parse("10.32.0.0/24")
    assert not r.usable(r.start)
    assert r.usable(r.start + 1)
    assert r.usable(r.end - 2)
    assert not r.usable(r.end - 1)
    assert not r.usable(r.end)
    assert not r.usable(r.start - 1)
    assert sum(1 for a in range(r.start - 2, r.end + 2) if r.usable(a)) == 254


def test_format_gives_address_with_prefix() -> None:
    r = AddressRange.parse("10.32.0.0/12")
    assert r.format(r.start + 5) == "10.32.0.5/12"
    assert r.format(r.start + 256 + 7) == "10.32.1.7/12"


def test_parse_address() -> None:
    r = AddressRange.parse("10.32.0.0/12")
    assert r.parse_address("10.32.0.5") == r.start + 5
    assert r.parse_address(" 10.32.0.5/12 ") == r.start + 5
    assert r.parse_address("10.47.255.254") == r.end - 2


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("banana", "'banana' is not an IPv4 address"),
        ("10.32.0.256", "'10.32.0.256' is not an IPv4 address"),
        ("fd00::1", "'fd00::1' is not an IPv4 address"),
        ("10.32.0.0", "10.32.0.0 is not a usable address of the allocation range 10.32.0.0/12"),
        ("10.47.255.255",
         "10.47.255.255 is not a usable address of the allocation range 10.32.0.0/12"),
        ("10.48.0.1", "10.48.0.1 is not a usable address of the allocation range 10.32.0.0/12"),
    ],
)
def test_bad_address_is_a_400(text: str, message: str) -> None:
    r = AddressRange.parse("10.32.0.0/12")
    with pytest.raises(IpamError) as caught:
        r.parse_address(text)
    assert isinstance(caught.value, InvalidRequestError)
    assert str(caught.value) == message


def test_parse_subnet() -> None:
    r = AddressRange.parse("10.32.0.0/12")
    start = int(ipaddress.IPv4Address("10.32.1.0"))
    assert r.parse_subnet("10.32.1.0/24") == (start, start + 256)
    assert r.parse_subnet(" 10.32.1.77/24 ") == (start, start + 256)
    assert r.parse_subnet("10.32.0.0/12") == (r.start, r.end)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("banana", "'banana' is not a CIDR subnet"),
        ("10.32.0.0/40", "'10.32.0.0/40' is not a CIDR subnet"),
        ("10.0.0.0/8", "subnet 10.0.0.0/8 is not inside the allocation range 10.32.0.0/12"),
        ("10.48.0.0/24", "subnet 10.48.0.0/24 is not inside the allocation range 10.32.0.0/12"),
        ("fd00::/64", "subnet fd00::/64 is not inside the allocation range 10.32.0.0/12"),
    ],
)
def test_bad_subnet_is_a_400(text: str, message: str) -> None:
    r = AddressRange.parse("10.32.0.0/12")
    with pytest.raises(IpamError) as caught:
        r.parse_subnet(text)
    assert isinstance(caught.value, InvalidRequestError)
    assert str(caught.value) == message


@pytest.mark.parametrize(
    ("routes", "expected"),
    [
        ([], None),
        (["0.0.0.0/0"], None),
        (["0.0.0.0/0", "192.168.1.0/24", "10.48.0.0/16", "10.31.255.0/24"], None),
        (["default", "garbage", "fd00::/8", "::/0"], None),
        (["0.0.0.0/0", "192.168.1.0/24", "10.32.5.0/24", "10.33.0.0/16"], "10.32.5.0/24"),
        (["10.0.0.0/8"], "10.0.0.0/8"),
        (["10.47.255.255/32"], "10.47.255.255/32"),
        (["garbage", "10.40.0.1/16"], "10.40.0.1/16"),
    ],
)
def test_overlapping_route(routes: list[str], expected: str | None) -> None:
    network = AddressRange.parse("10.32.0.0/12").network
    assert overlapping_route(network, routes) == expected

"""RouterConfig validation and the address parsers (``addresses.py``): every check,
at and beyond its edge.

Expected values are written out here, never computed with the parser itself
(except the round-trip property, which judges ``format_host_port`` by ``parse``).
"""

from __future__ import annotations

import ipaddress

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from meshrouter.addresses import (
    DEFAULT_PORT,
    format_host_port,
    normalise_peer_address,
    parse_host_port,
)
from meshrouter.config import IpamSettings, MeshSettings, RouterConfig, TimingSettings
from meshrouter.errors import ConfigError
from meshrouter.ipam.founding import CONSENSUS, OBSERVER, SEED, FoundingMode
from meshrouter.names import PeerName

NAME = PeerName(0x0200_0000_0001)

# -- the settings groups ---------------------------------------------------------------


@pytest.mark.parametrize("limit", [0, -1])
def test_a_connection_limit_below_one_is_refused(limit: int) -> None:
    with pytest.raises(ConfigError, match=f"--conn-limit must be at least 1, got {limit}"):
        MeshSettings(conn_limit=limit)


def test_a_connection_limit_of_one_is_accepted() -> None:
    assert MeshSettings(conn_limit=1).conn_limit == 1


@pytest.mark.parametrize("port", [-1, 65536])
def test_a_listen_port_outside_the_port_range_is_refused(port: int) -> None:
    with pytest.raises(ConfigError, match=f"listen port {port} is out of range"):
        MeshSettings(listen_port=port)


@pytest.mark.parametrize("port", [0, 1, 65535])
def test_listen_ports_at_the_edges_are_accepted(port: int) -> None:
    assert MeshSettings(listen_port=port).listen_port == port  # 0: the OS picks one


@pytest.mark.parametrize(("interval", "timeout"), [(5.0, 5.0), (5.0, 4.9), (30.0, 0.0)])
def test_a_heartbeat_timeout_not_above_the_interval_is_refused(
    interval: float, timeout: float
) -> None:
    with pytest.raises(ConfigError, match="must exceed the heartbeat interval"):
        TimingSettings(heartbeat_interval=interval, heartbeat_timeout=timeout)


def test_a_heartbeat_timeout_just_above_the_interval_is_accepted() -> None:
    timing = TimingSettings(heartbeat_interval=5.0, heartbeat_timeout=5.001)
    assert (timing.heartbeat_interval, timing.heartbeat_timeout) == (5.0, 5.001)


@pytest.mark.parametrize("delay", [0.0, -1.0])
def test_a_reclaim_delay_that_is_not_positive_is_refused(delay: float) -> None:
    with pytest.raises(ConfigError, match="--ipalloc-reclaim-after must be greater than 0"):
        IpamSettings(reclaim_after=delay)


def test_a_tiny_reclaim_delay_is_accepted() -> None:
    assert IpamSettings(reclaim_after=0.001).reclaim_after == 0.001


def test_a_nickname_of_255_characters_is_the_longest_accepted() -> None:
    assert len(RouterConfig(name=NAME, nickname="n" * 255).nickname) == 255
    with pytest.raises(ConfigError, match="nickname is longer than 255 characters"):
        RouterConfig(name=NAME, nickname="n" * 256)


def test_the_defaults_are_weaves() -> None:
    config = RouterConfig(name=NAME, nickname="h")
    assert (config.mesh.listen_port, config.mesh.conn_limit) == (6783, 200)
    assert (config.timing.heartbeat_interval, config.timing.heartbeat_timeout) == (30.0, 60.0)
    assert config.ipam is not None and config.ipam.range == "10.32.0.0/12"
    assert config.ipam.founding == FoundingMode(CONSENSUS, electors=1)
    assert config.dataplane is None and config.dns is None


# -- from_flat: the flat overrides of tests and the simulator ---------------------------


def test_flat_settings_land_in_their_groups() -> None:
    config = RouterConfig.from_flat(
        NAME, "h", conn_limit=16, initial_peers=("10.0.0.1:6783", "10.0.0.2:6783"),
        heartbeat_interval=1.0, heartbeat_timeout=3.0, ipalloc_range="10.40.0.0/16",
        ipalloc_reclaim_after=9.0, ipam_tick=0.5,
    )
    assert config.mesh.conn_limit == 16
    assert config.mesh.initial_peers == ("10.0.0.1:6783", "10.0.0.2:6783")
    assert (config.timing.heartbeat_interval, config.timing.heartbeat_timeout) == (1.0, 3.0)
    assert config.ipam == IpamSettings(
        range="10.40.0.0/16",
        founding=FoundingMode(CONSENSUS, electors=3),  # us and the two initial peers
        reclaim_after=9.0,
        tick=0.5,
    )


def test_flat_founding_modes_are_parsed_once() -> None:
    seeds = "seed=02:00:00:00:00:02,02:00:00:00:00:01"
    seed = RouterConfig.from_flat(NAME, "h", ipalloc_init=seeds)
    assert seed.ipam is not None
    assert seed.ipam.founding == FoundingMode(
        SEED, seeds=(PeerName(0x0200_0000_0001), PeerName(0x0200_0000_0002))
    )
    observer = RouterConfig.from_flat(NAME, "h", ipalloc_init="observer")
    assert observer.ipam is not None and observer.ipam.founding == FoundingMode(OBSERVER)
    with pytest.raises(ConfigError, match=r"N must be 1\.\.4096"):
        RouterConfig.from_flat(NAME, "h", ipalloc_init="consensus=0")


def test_flat_ipam_false_turns_ipam_off() -> None:
    assert RouterConfig.from_flat(NAME, "h", ipam=False).ipam is None


def test_unknown_flat_settings_are_named() -> None:
    with pytest.raises(ConfigError, match="unknown router settings: colour, heartbeat"):
        RouterConfig.from_flat(NAME, "h", heartbeat=1.0, colour="blue", conn_limit=3)


def test_flat_settings_are_validated_by_their_group() -> None:
    with pytest.raises(ConfigError, match="--conn-limit"):
        RouterConfig.from_flat(NAME, "h", conn_limit=0)
    with pytest.raises(ConfigError, match="heartbeat timeout"):
        RouterConfig.from_flat(NAME, "h", heartbeat_interval=10.0, heartbeat_timeout=10.0)
    with pytest.raises(ConfigError, match="reclaim-after"):
        RouterConfig.from_flat(NAME, "h", ipalloc_reclaim_after=0)


# -- parse_host_port ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("10.0.0.1", ("10.0.0.1", 6783)),
        ("10.0.0.1:80", ("10.0.0.1", 80)),
        ("  10.0.0.1:80 \n", ("10.0.0.1", 80)),
        ("host-1.example.com:65535", ("host-1.example.com", 65535)),
        ("example.com.", ("example.com.", 6783)),
        ("localhost:1", ("localhost", 1)),
        ("::1", ("::1", 6783)),
        ("fd00::1:2", ("fd00::1:2", 6783)),  # a bare IPv6 address: no port
        ("[fd00::1]", ("fd00::1", 6783)),
        ("[fd00::1]:80", ("fd00::1", 80)),
        ("a" * 63 + ".b", ("a" * 63 + ".b", 6783)),
    ],
)
def test_addresses_parse(text: str, expected: tuple[str, int]) -> None:
    assert parse_host_port(text, 6783) == expected


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("", "empty peer"),
        ("   ", "empty peer"),
        ("[fd00::1", "missing ']'"),
        ("[fd00::1]80", "expected ':PORT' after ']'"),
        ("host:1:2", "write IPv6 addresses as \\[ADDR\\]:PORT"),
        (":80", "missing host"),
        ("[]:80", "missing host"),
        ("bad_host:80", "'bad_host' is not a host name or IP address"),
        ("-lead.example:80", "is not a host name"),
        ("a" * 64 + ".b", "is not a host name"),  # a label of 64 characters
        (".".join(["a" * 63] * 4) + "a:1", "is not a host name"),  # 256 characters
        ("host:0", "port must be a number from 1 to 65535"),
        ("host:65536", "port must be a number from 1 to 65535"),
        ("host:", "port must be a number"),
        ("host:http", "port must be a number"),
        ("host:-1", "port must be a number"),
        ("host:+80", "port must be a number"),
        ("[fd00::1]:99999", "port must be a number"),
    ],
)
def test_bad_addresses_are_refused_with_the_reason(text: str, reason: str) -> None:
    with pytest.raises(ConfigError, match=reason):
        parse_host_port(text, 6783, what="peer address")


def test_port_zero_only_where_allowed() -> None:
    assert parse_host_port("127.0.0.1:0", 6784, allow_zero=True) == ("127.0.0.1", 0)
    with pytest.raises(ConfigError, match="from 0 to 65535"):
        parse_host_port("127.0.0.1:65536", 6784, allow_zero=True)


def test_the_default_port_is_the_callers() -> None:
    assert parse_host_port("127.0.0.1", 6784) == ("127.0.0.1", 6784)


# -- format_host_port and normalise_peer_address -------------------------------------------


@pytest.mark.parametrize(
    ("host", "port", "expected"),
    [
        ("10.0.0.1", 6783, "10.0.0.1:6783"),
        ("fd00::1", 80, "[fd00::1]:80"),
        ("example.com", 1, "example.com:1"),
    ],
)
def test_format_brackets_ipv6_only(host: str, port: int, expected: str) -> None:
    assert format_host_port(host, port) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("10.0.0.1", f"10.0.0.1:{DEFAULT_PORT}"),
        (" 10.0.0.1:7000 ", "10.0.0.1:7000"),
        ("fd00::1", f"[fd00::1]:{DEFAULT_PORT}"),
        ("[fd00::1]:7000", "[fd00::1]:7000"),
        ("peer.example", f"peer.example:{DEFAULT_PORT}"),
    ],
)
def test_peer_addresses_are_normalised(text: str, expected: str) -> None:
    assert normalise_peer_address(text) == expected


def test_a_bad_peer_address_says_it_is_a_peer_address() -> None:
    with pytest.raises(ConfigError, match="peer address 'x:y'"):
        normalise_peer_address("x:y")


hosts = (
    st.ip_addresses().map(str)
    | st.from_regex(r"\A[a-z0-9]([a-z0-9-]{0,10}[a-z0-9])?(\.[a-z0-9]{1,5}){0,3}\Z")
)


@settings(deadline=None, max_examples=200)
@given(hosts, st.integers(1, 65535))
def test_parse_inverts_format(host: str, port: int) -> None:
    assert parse_host_port(format_host_port(host, port), 9) == (host, port)


@settings(deadline=None, max_examples=200)
@given(st.text(max_size=30))
def test_any_text_parses_or_is_refused_with_a_config_error(text: str) -> None:
    try:
        host, port = parse_host_port(text, 6783)
    except ConfigError:
        return
    assert 1 <= port <= 65535 and host
    if ":" in host:  # only an IPv6 literal may contain colons
        ipaddress.IPv6Address(host)

"""Settings validation, vsctl JSON parsing and namespace/veth request checks (no root)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from meshrouter.dataplane import netlink
from meshrouter.dataplane.ovs import settings as ovs_settings
from meshrouter.dataplane.ovs.bridges import parse_json_table
from meshrouter.dataplane.ovs.settings import OvsSettings, choose_datapath_type
from meshrouter.errors import ConfigError, InvalidRequestError, NotFoundError


def test_settings_refuse_bad_names_and_ranges(tmp_path: Path) -> None:
    OvsSettings(data_dir=tmp_path)
    OvsSettings(data_dir=tmp_path, pmd_cpu_mask="0x2", pmd_max_sleep_us=0)
    OvsSettings(data_dir=tmp_path, pmd_cpu_mask="C")
    for bad in ({"bridge": "x" * 16}, {"bridge": "a b"}, {"phy_bridge": "mr-int"},
                {"vxlan_port": 0}, {"container_mtu": 100}, {"probe_interval": 0},
                {"pmd_cpu_mask": "0x0"}, {"pmd_cpu_mask": "core1"}, {"pmd_cpu_mask": ""},
                {"pmd_cpu_mask": "+1"}, {"pmd_cpu_mask": "1_0"}, {"pmd_cpu_mask": "0x 2"},
                {"pmd_max_sleep_us": -1}, {"pmd_max_sleep_us": 10_001},
                {"vswitchd_nice": -21}, {"vswitchd_nice": 20}):
        with pytest.raises(ConfigError):
            OvsSettings(data_dir=tmp_path, **bad)  # type: ignore[arg-type]


def test_datapath_type_system_needs_the_kernel_module(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ovs_settings, "kernel_datapath_usable", lambda: False)
    assert choose_datapath_type("auto") == "netdev"
    with pytest.raises(ConfigError, match="kernel module"):
        choose_datapath_type("system")
    monkeypatch.setattr(ovs_settings, "kernel_datapath_usable", lambda: True)
    assert choose_datapath_type("auto") == "system"
    assert choose_datapath_type("netdev") == "netdev"


def test_vsctl_json_maps_sets_and_uuids_become_python_values() -> None:
    text = json.dumps({
        "headings": ["name", "ofport", "error", "external_ids", "_uuid"],
        "data": [["mrx", 1000, ["set", []], ["map", [["meshrouter-container", "c1"]]],
                  ["uuid", "1234"]]],
    })
    assert parse_json_table(text) == [{
        "name": "mrx", "ofport": 1000, "error": [],
        "external_ids": {"meshrouter-container": "c1"}, "_uuid": "1234",
    }]


def test_netns_is_a_name_a_path_or_a_pid() -> None:
    assert netlink.resolve_netns(str(os.getpid())) == f"/proc/{os.getpid()}/ns/net"
    assert netlink.resolve_netns("/proc/self/ns/net") == "/proc/self/ns/net"
    with pytest.raises(NotFoundError, match="no such network namespace"):
        netlink.resolve_netns("mr-surely-not-there")
    with pytest.raises(NotFoundError):
        netlink.resolve_netns("999999999")
    for bad in ("", "..", "a\0b"):
        with pytest.raises(InvalidRequestError):
            netlink.resolve_netns(bad)


def test_host_ifname_is_stable_short_and_distinct() -> None:
    a, b = netlink.host_ifname("container-a"), netlink.host_ifname("container-b")
    assert a == netlink.host_ifname("container-a") and a != b
    assert len(a) <= 15 and a.startswith("mr")


@pytest.mark.parametrize(("field", "value", "message"), [
    ("ifname", "x" * 16, "interface name"),
    ("mtu", 10, "MTU"),
    ("cidr", "10.0.0.1", "CIDR"),
    ("cidr", "fd00::1/64", "IPv4"),
    ("mac", "02:00:00:00:00", "invalid MAC"),
    ("mac", "03:00:00:00:00:01", "group address"),
    ("gateway", "nope", "gateway"),
])
def test_veth_requests_are_checked_before_anything_is_made(
    field: str, value: object, message: str
) -> None:
    values: dict[str, object] = {
        "container_id": "c", "container_netns": "/proc/self/ns/net", "ifname": "eth0",
        "mac": "02:00:00:00:00:01", "cidr": "10.0.0.1/24", "mtu": 1450, "gateway": None,
    }
    netlink.VethSpec(**values).validate()  # type: ignore[arg-type]
    values[field] = value
    with pytest.raises(InvalidRequestError, match=message):
        netlink.VethSpec(**values).validate()  # type: ignore[arg-type]


def test_a_data_dir_too_long_for_unix_sockets_is_refused_up_front(tmp_path: Path) -> None:
    from meshrouter.dataplane.ovs.daemons import OwnDaemons

    OwnDaemons(tmp_path / "ovs", netns=None, handler_threads=1)
    with pytest.raises(ConfigError, match="too long"):
        OwnDaemons(tmp_path / ("d" * 90) / "ovs", netns=None, handler_threads=1)


def test_a_loopback_router_never_guesses_an_underlay_device(tmp_path: Path) -> None:
    import trio

    from meshrouter.dataplane.ovs.bridges import UnderlayBridge
    from meshrouter.dataplane.ovs.tools import OvsTools
    from meshrouter.errors import UnavailableError

    tools = OvsTools(db_socket=str(tmp_path / "db.sock"), rundir=str(tmp_path))
    for listen in ("127.0.0.1", "127.0.0.1:6783", "::1", "localhost"):
        bridge = UnderlayBridge(tools, OvsSettings(data_dir=tmp_path, listen_address=listen),
                                None)
        with pytest.raises(UnavailableError, match="--underlay-dev"):
            trio.run(bridge.discover)


def test_vswitchd_is_started_through_nice_when_a_priority_is_asked() -> None:
    from meshrouter.dataplane.ovs.daemons import priority_prefix

    assert priority_prefix(None) == []
    assert priority_prefix(-10, ours=0) == ["nice", "-n", "-10"]
    # nice(1) is relative: a router running at nice 10 asks for -20 to reach -10
    assert priority_prefix(-10, ours=10) == ["nice", "-n", "-20"]
    assert priority_prefix(5, ours=-3) == ["nice", "-n", "8"]
    assert OvsSettings(data_dir=Path("/tmp")).vswitchd_nice == -10  # ovs-ctl's default


def test_pmd_settings_of_a_host_ovs_are_left_alone_unless_a_mask_is_given(
        tmp_path: Path) -> None:
    """PMD placement and sleep are switch-wide: an OVS the router did not start
    keeps its operator's settings, unless the operator passed ``--pmd-cpu-mask``."""
    from meshrouter.dataplane.ovs.datapath import OvsDatapath

    external = OvsDatapath(OvsSettings(data_dir=tmp_path, port_io="afxdp-pmd"))
    assert external._leaves_pmd_alone()
    asked = OvsDatapath(OvsSettings(data_dir=tmp_path, port_io="afxdp-pmd",
                                    pmd_cpu_mask="0x2"))
    assert not asked._leaves_pmd_alone()
    own = OvsDatapath(OvsSettings(data_dir=tmp_path, port_io="afxdp-pmd"))
    own._daemons = object()  # type: ignore[assignment]  # as after starting our own
    assert not own._leaves_pmd_alone()

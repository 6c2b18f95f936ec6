"""The AF_XDP / AF_PACKET decision (``portio``), case by case."""

from __future__ import annotations

import pytest

from meshrouter.dataplane.ovs import portio
from meshrouter.dataplane.ovs.portio import UNKNOWN, XdpProbe, after_attempt, choose

WORKS = XdpProbe(True, "afxdp-nonpmd xdp-mode=generic on ul0")
BROKEN = XdpProbe(False, "afxdp-nonpmd xdp-mode=generic on ul0: Invalid argument")


@pytest.mark.parametrize(("wanted", "dp_type", "probe", "io"), [
    # the kernel datapath has no port I/O to choose, whatever was asked
    ("auto", "system", UNKNOWN, "afpacket"),
    ("afxdp", "system", WORKS, "afpacket"),
    ("auto", None, UNKNOWN, "afpacket"),
    # asked for AF_PACKET: never AF_XDP
    ("afpacket", "netdev", WORKS, "afpacket"),
    ("afpacket", "netdev", UNKNOWN, "afpacket"),
    # auto: try until it fails, keep using it once it worked
    ("auto", "netdev", UNKNOWN, "afxdp"),
    ("auto", "netdev", WORKS, "afxdp"),
    ("auto", "netdev", BROKEN, "afpacket"),
    # forced AF_XDP still falls back where it cannot work (else no port would)
    ("afxdp", "netdev", BROKEN, "afpacket"),
    ("afxdp-pmd", "netdev", UNKNOWN, "afxdp-pmd"),
    ("afxdp-pmd", "netdev", WORKS, "afxdp-pmd"),
])
def test_choose(wanted: str, dp_type: str | None, probe: XdpProbe, io: str) -> None:
    assert choose(wanted, dp_type, probe)[0] == io


def test_the_reason_names_the_cause() -> None:
    assert choose("auto", "netdev", BROKEN)[1] == (
        "AF_XDP unusable here: afxdp-nonpmd xdp-mode=generic on ul0: Invalid argument")
    assert "--port-io afpacket" in choose("afpacket", "netdev", UNKNOWN)[1]
    assert "first port" in choose("auto", "netdev", UNKNOWN)[1]


def test_the_first_attempt_decides_and_a_later_failure_is_the_ports_own() -> None:
    failed = after_attempt(UNKNOWN, False, "on ul0: Invalid argument")
    assert failed == XdpProbe(False, "on ul0: Invalid argument")
    worked = after_attempt(UNKNOWN, True, "on ul0")
    assert worked == XdpProbe(True, "on ul0")
    assert after_attempt(worked, False, "on mp12: too big") == worked
    # a static probe's "no" is only overturned by a port that really worked
    assert after_attempt(BROKEN, True, "on mp1") == XdpProbe(True, "on mp1")


def test_static_probe_reads_the_ovs_build() -> None:
    no_xdp = portio.static_probe("[dpdk, erspan, geneve, internal, patch, system, tap, vxlan]\n")
    assert no_xdp.supported is False and "no afxdp interface type" in no_xdp.reason
    types = "[afxdp, afxdp-nonpmd, erspan, geneve, internal, patch, system, tap, vxlan]"
    assert portio.static_probe(types).supported in (None, False)  # the kernel decides


def test_afxdp_carries_an_mtu_up_to_one_umem_frame() -> None:
    # measured on these machines (ping -M do over an AF_XDP underlay): a 3,712-byte
    # frame passes, 3,713 bytes vanish; 3,712 = MTU 3,698 + the Ethernet header
    assert portio.AFXDP_MAX_MTU == 3698
    assert portio.fits_afxdp(3698) and portio.fits_afxdp(1500) and portio.fits_afxdp(None)
    assert not portio.fits_afxdp(3699) and not portio.fits_afxdp(9000)


def test_pmd_settings_only_for_pmd_ports_and_the_mask_only_when_given() -> None:
    assert portio.pmd_other_config("afxdp", "0x2", 100) == []
    assert portio.pmd_other_config("afpacket", None, 100) == []
    assert portio.pmd_other_config("afxdp-pmd", None, 100) == [
        "other_config:pmd-maxsleep=100", "other_config:pmd-sleep-max=100"]
    assert portio.pmd_other_config("afxdp-pmd", "0x2", 0) == [
        "other_config:pmd-cpu-mask=0x2", "other_config:pmd-maxsleep=0",
        "other_config:pmd-sleep-max=0"]


@pytest.mark.parametrize(("wanted", "cpus", "io"), [
    ("auto", 1, "afxdp"), ("auto", 2, "afxdp-pmd"), ("auto", 64, "afxdp-pmd"),
    ("afxdp", 64, "afxdp"), ("afxdp-pmd", 1, "afxdp-pmd"), ("afpacket", 64, "afpacket"),
])
def test_auto_polls_with_a_pmd_from_two_cpus(wanted: str, cpus: int, io: str) -> None:
    assert choose(wanted, "netdev", WORKS, cpus)[0] == io
    assert choose(wanted, "netdev", BROKEN, cpus)[0] == "afpacket"
    assert choose(wanted, "system", WORKS, cpus)[0] == "afpacket"


def test_a_pmd_without_a_mask_is_pinned_to_the_last_usable_cpu() -> None:
    assert portio.pmd_other_config("afxdp-pmd", None, 100, frozenset({0, 1, 2, 3}))[0] == (
        "other_config:pmd-cpu-mask=0x8")
    assert portio.pmd_other_config("afxdp-pmd", None, 100, frozenset({2, 5}))[0] == (
        "other_config:pmd-cpu-mask=0x20")
    assert portio.pmd_other_config("afxdp-pmd", "0x3", 100, frozenset({2, 5}))[0] == (
        "other_config:pmd-cpu-mask=0x3")
    assert portio.threads("afxdp-pmd", None, 100, frozenset({0, 1, 2, 3})) == (
        "PMD on CPU mask 0x8, idle sleep up to 100 us")
    assert portio.threads("afxdp", None, 100, frozenset({0, 1})) == "vswitchd's main thread"
    assert "a PMD thread: 4 CPUs" in choose("auto", "netdev", WORKS, 4)[1]
    assert "main thread: 1 CPU, PMDs from 2" in choose("auto", "netdev", UNKNOWN, 1)[1]


def test_the_reason_names_ports_too_large_for_afxdp() -> None:
    assert portio.with_mtu_note("w", "afxdp", {"underlay": 1500, "container": 1450}) == "w"
    assert portio.with_mtu_note("w", "afpacket", {"underlay": 9000}) == "w"
    assert portio.with_mtu_note("w", "afxdp-pmd", {"underlay": 9000, "container": 8950}) == (
        "underlay MTU 9000 and container MTU 8950 above AF_XDP's 3698: "
        "AF_PACKET for those ports; w")

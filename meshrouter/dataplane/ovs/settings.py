"""What an ``OvsDatapath`` is told: which OVS, which bridges, which underlay.

One settings object serves production and the namespace lab: production leaves
``netns`` unset (the switch lives in the router's own namespace) and
``db_socket`` at the system socket; the lab names each host's namespace and
forces the router's own daemons under a private data directory.  Nothing else
differs, so the lab tests the production code.
"""

from __future__ import annotations

import string
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from meshrouter.errors import ConfigError

SYSTEM_DB_SOCKET = "/var/run/openvswitch/db.sock"
SCHEMA = "/usr/share/openvswitch/vswitch.ovsschema"
VXLAN_OVERHEAD = 50
"""Outer Ethernet 14 + IPv4 20 + UDP 8 + VXLAN 8: the container MTU is the underlay's minus this."""

DatapathType = Literal["auto", "system", "netdev"]
OwnDaemons = Literal["auto", "always", "never"]
PortIo = Literal["auto", "afxdp", "afxdp-pmd", "afpacket"]
XdpMode = Literal["generic", "native", "native-with-zerocopy", "best-effort"]


@dataclass(frozen=True, slots=True)
class OvsSettings:
    """Configuration of the OVS driver; see the field docs for the defaults' reasons."""

    data_dir: Path
    """Our daemons (when we run them) live under ``<data_dir>/ovs/``; so does the saved underlay."""
    db_socket: str | None = None
    """The ovsdb socket to use; None: the system one, or our own daemons if none answers."""
    own_daemons: OwnDaemons = "auto"
    """``auto``: run our own ovsdb-server/ovs-vswitchd only when no OVS answers on the socket."""
    datapath_type: DatapathType = "auto"
    """``system`` needs the openvswitch kernel module; ``auto`` picks it only when it is loaded."""
    bridge: str = "mr-int"
    phy_bridge: str = "mr-phy"
    underlay_dev: str | None = None
    """Default: the device holding ``listen_address``, else the default route's."""
    listen_address: str | None = None
    manage_underlay: bool = True
    """netdev only: move the underlay IP onto the LOCAL port of ``phy_bridge`` (NOTES section 1)."""
    vxlan_port: int = 4789
    container_mtu: int | None = None
    """Default: underlay MTU minus the VXLAN overhead."""
    port_io: PortIo = "auto"
    """netdev only: ``auto`` tries AF_XDP where the host supports it (polled by a PMD
    thread on hosts with 2 or more CPUs, else by the main thread), else AF_PACKET
    (``portio.py``)."""
    xdp_mode: XdpMode = "generic"
    """AF_XDP ports' ``options:xdp-mode``: generic was as fast as native on veth
    (NOTES), and ``native-with-zerocopy`` fails there (the fallback test uses it)."""
    pmd_cpu_mask: str | None = None
    """PMD ports: OVS's ``pmd-cpu-mask`` (hex, e.g. ``0x2``), the cores its polling
    threads are pinned to; None: the last CPU the router may use (``portio``).
    Several switches on one machine (the lab) need disjoint masks, or their PMDs
    share one core (NOTES, "AF_XDP measured")."""
    pmd_max_sleep_us: int = 100
    """PMD ports: how long (microseconds) an idle PMD may sleep per
    poll (OVS ``pmd-maxsleep``, 3.1+), so a PMD without traffic does not burn its
    core; a loaded PMD never sleeps.  0: busy-poll always (OVS's default)."""
    port_pool: int = 2
    """Spare container ports kept ready (``pool.py``): an attach takes one instead
    of waiting for vswitchd to add a port (0: none)."""
    netns: str | None = None
    """The switch's network namespace (name or path); None: the router's own."""
    probe_interval: float = 1.0
    """How often the supervisor checks the daemons (cheap: a pidfile and /proc)."""
    verify_interval: float = 5.0
    """How often it counts our flows and checks the ports (one tool call each)."""
    tool_timeout: float = 10.0
    vswitchd_nice: int | None = -10
    """Own daemons: the nice of ovs-vswitchd (and of its autogroup), as OVS's
    ``ovs-ctl`` starts it, so containers busy on the CPU do not starve the
    datapath (``daemons.py``); None: the router's own priority."""
    handler_threads: int | None = 1
    """Own daemons: OVS handler/revalidator threads (1 on small shared machines)."""

    def __post_init__(self) -> None:
        for name in (self.bridge, self.phy_bridge):
            if not name or len(name) > 15 or not all(c.isalnum() or c in "-_." for c in name):
                raise ConfigError(f"invalid bridge name {name!r} (1-15 characters)")
        if self.bridge == self.phy_bridge:
            raise ConfigError("the integration and underlay bridges must differ")
        if not 1 <= self.vxlan_port <= 65535:
            raise ConfigError(f"VXLAN port {self.vxlan_port} out of range")
        if self.container_mtu is not None and not 576 <= self.container_mtu <= 65000:
            raise ConfigError(f"container MTU {self.container_mtu} out of range (576-65000)")
        if self.pmd_cpu_mask is not None and not _is_cpu_mask(self.pmd_cpu_mask):
            raise ConfigError(f"invalid PMD CPU mask {self.pmd_cpu_mask!r} "
                              "(a non-zero hex mask such as 0x2)")
        if self.vswitchd_nice is not None and not -20 <= self.vswitchd_nice <= 19:
            raise ConfigError(f"nice {self.vswitchd_nice} out of range (-20..19)")
        if not 0 <= self.pmd_max_sleep_us <= 10_000:
            raise ConfigError(f"PMD sleep of {self.pmd_max_sleep_us} us out of range "
                              "(0-10000)")
        if not 0 <= self.port_pool <= 64:
            raise ConfigError(f"port pool of {self.port_pool} out of range (0-64)")
        if self.probe_interval <= 0 or self.verify_interval <= 0:
            raise ConfigError("probe intervals must be positive")

    @property
    def ovs_dir(self) -> Path:
        return self.data_dir / "ovs"


def _is_cpu_mask(text: str) -> bool:
    """Hex digits only, as OVS reads them (``int`` would also take ``+1`` and ``1_0``)."""
    digits = text[2:] if text.lower().startswith("0x") else text
    if not 0 < len(digits) <= 64 or any(c not in string.hexdigits for c in digits):
        return False
    return int(digits, 16) > 0


def kernel_datapath_usable() -> bool:
    """Whether the openvswitch kernel module is loaded (``system`` datapath possible)."""
    return Path("/sys/module/openvswitch").exists()


def choose_datapath_type(wanted: DatapathType) -> Literal["system", "netdev"]:
    if wanted == "auto":
        return "system" if kernel_datapath_usable() else "netdev"
    if wanted == "system" and not kernel_datapath_usable():
        raise ConfigError(
            "datapath type system needs the openvswitch kernel module, which is not loaded "
            "(modprobe openvswitch, or use --datapath-type netdev)"
        )
    return wanted

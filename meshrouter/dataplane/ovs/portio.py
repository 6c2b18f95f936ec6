"""Which port I/O to ask OVS for: AF_XDP where this host supports it, else AF_PACKET.

ovs-lab/NOTES.md ("AF_XDP measured"): with the userspace datapath, AF_XDP on the
underlay *and* the container ports (``afxdp-nonpmd``, ``xdp-mode=generic``) ran
2x the AF_PACKET throughput on these veths (3x with PMD threads, which on 2
shared cores cost everything else its CPU).  Whether AF_XDP works depends on
the host: the OVS build (``iface_types``), the kernel (XDP sockets), the
device and the mode (``native-with-zerocopy`` fails on veth).  So:

* a cheap probe first (``static_probe``): OVS lists ``afxdp``, the kernel opens
  an AF_XDP socket;
* then the first AF_XDP port decides (``after_attempt``): if it fails before
  any has worked, AF_XDP is taken as unusable here, with OVS's own error as
  the reason, and every later port goes straight to AF_PACKET instead of
  paying a failed reconfiguration each.  Once one port has worked, a later
  failure is that port's own (it still falls back, alone);
* the answer is kept for the datapath's life (recoveries included), and shown
  in ``status`` and at start.

``choose`` is the whole decision, a pure function tested case by case.

AF_XDP has a size limit of its own: OVS gives every packet one 4 KiB umem
frame, less 256 bytes of XDP headroom and 128 of its own, so a frame above
3,712 bytes -- an MTU above ``AFXDP_MAX_MTU`` (3,698) -- is dropped in silence
(measured: ping -M do passes at 3,698 bytes on the wire and vanishes at
3,699).  A jumbo underlay on AF_XDP would black-hole every large packet,
the host's own TCP over ``br-phy`` included.  So a port whose MTU is above it
gets AF_PACKET (``fits_afxdp``) -- its own choice, which says nothing about
AF_XDP on this host, so it is not an ``after_attempt``.

PMD threads (``--port-io afxdp-pmd``) are configured before the first port:
``pmd_other_config`` says which ``Open_vSwitch`` keys -- the cores (only when
given: an operator's own mask on a shared OVS is left alone) and the idle
sleep, so a PMD with no traffic does not spin a core at 100 %.
"""

from __future__ import annotations

import errno
import logging
import socket
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

log = logging.getLogger(__name__)

AF_XDP = 44
"""``socket.AF_XDP`` (Linux); not every Python build names it."""


AFXDP_MAX_MTU = 4096 - 256 - 128 - 14
"""The largest MTU an OVS AF_XDP port carries: one umem frame (4096) less
XDP_PACKET_HEADROOM (256), OVS_XDP_HEADROOM (128) and the Ethernet header."""


def fits_afxdp(mtu: int | None) -> bool:
    """Whether a port of ``mtu`` (None: not known, the device's default) may be AF_XDP."""
    return mtu is None or mtu <= AFXDP_MAX_MTU


@dataclass(frozen=True, slots=True)
class XdpProbe:
    """What is known of AF_XDP here: ``supported`` None until a port has tried it."""

    supported: bool | None
    reason: str


UNKNOWN = XdpProbe(None, "not tried yet")


def choose(wanted: str, dp_type: str | None, probe: XdpProbe) -> tuple[str, str]:
    """(the I/O to ask for the next port -- ``afxdp``, ``afxdp-pmd`` or
    ``afpacket`` -- and why).  ``wanted`` is the ``--port-io`` setting."""
    if dp_type != "netdev":
        return "afpacket", f"{dp_type or 'unknown'} datapath: kernel ports, no port I/O to choose"
    if wanted == "afpacket":
        return "afpacket", "AF_PACKET asked for (--port-io afpacket)"
    if probe.supported is False:
        return "afpacket", f"AF_XDP unusable here: {probe.reason}"
    io = "afxdp-pmd" if wanted == "afxdp-pmd" else "afxdp"
    if probe.supported:
        return io, f"AF_XDP works here ({probe.reason})"
    return io, "AF_XDP to be tried on the first port"


def pmd_other_config(port_io: str, cpu_mask: str | None, max_sleep_us: int) -> list[str]:
    """The ``other_config`` settings (``key=value``) for PMD threads; none unless
    PMD ports are asked for.  ``pmd-maxsleep`` is OVS 3.1's name, ``pmd-sleep-max``
    3.2's and later's; each version ignores the other's key."""
    if port_io != "afxdp-pmd":
        return []
    out = [f"other_config:pmd-maxsleep={max_sleep_us}",
           f"other_config:pmd-sleep-max={max_sleep_us}"]
    if cpu_mask is not None:
        out.insert(0, f"other_config:pmd-cpu-mask={cpu_mask}")
    return out


def after_attempt(probe: XdpProbe, ok: bool, detail: str) -> XdpProbe:
    """The probe after one AF_XDP port attempt (see the module doc)."""
    if probe.supported is True:
        return probe  # one port worked: later failures are those ports' own
    if ok:
        return XdpProbe(True, detail)
    return XdpProbe(False, detail)


def static_probe(iface_types: str) -> XdpProbe:
    """Before any port: does this OVS build have AF_XDP ports, and this kernel
    XDP sockets?  ``iface_types`` is ``ovs-vsctl get Open_vSwitch . iface_types``."""
    if "afxdp" not in iface_types:
        return XdpProbe(False, "this OVS build has no afxdp interface type "
                        f"(iface_types: {iface_types.strip() or 'empty'})")
    try:
        sock = socket.socket(AF_XDP, socket.SOCK_RAW, 0)
    except OSError as exc:
        if exc.errno in (errno.EAFNOSUPPORT, errno.EINVAL):
            return XdpProbe(False, f"the kernel has no AF_XDP sockets ({exc.strerror})")
        return UNKNOWN  # e.g. EPERM: let OVS itself try
    sock.close()
    return UNKNOWN


class PortIo:
    """One datapath's choice, kept for its life: ``wanted()`` for the next port,
    ``result`` hears each AF_XDP attempt, ``probe`` runs ``static_probe`` once."""

    def __init__(self, setting: str) -> None:
        self.setting = setting
        self.dp_type: str | None = None
        self.state = UNKNOWN
        self._probed = False

    def wanted(self) -> str:
        return choose(self.setting, self.dp_type, self.state)[0]

    def why(self) -> str:
        return choose(self.setting, self.dp_type, self.state)[1]

    def result(self, ok: bool, detail: str) -> None:
        before = self.state
        self.state = after_attempt(self.state, ok, detail)
        if self.state != before:
            log.info("port I/O: %s", self.why())

    async def probe(self, dp_type: str, iface_types: Callable[[], Awaitable[str]]) -> None:
        self.dp_type = dp_type
        if self._probed or dp_type != "netdev" or self.setting == "afpacket":
            return
        self.state = static_probe(await iface_types())
        self._probed = True
        log.info("port I/O: %s", self.why())

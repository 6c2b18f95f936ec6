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

Threads.  AF_XDP ports are polled by vswitchd's main thread (``afxdp``,
OVS type ``afxdp-nonpmd``) or by a PMD thread pinned to a core
(``afxdp-pmd``).  ``auto`` takes a PMD on hosts with ``AUTO_PMD_MIN_CPUS`` or
more.  PMD settings go in before the first port (``pmd_other_config``): the
core (``--pmd-cpu-mask``, else the last CPU the router may use) and an idle
sleep of up to ``pmd_max_sleep_us`` per poll, so a PMD without traffic does
not spin its core (measured: 74 % of a core idle without it, 11 % at 100 us,
2 % at 1 ms; 100 us also gave the lowest ping, 0.4-0.7 ms).
"""

from __future__ import annotations

import errno
import logging
import os
import socket
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from meshrouter.errors import ConfigError

log = logging.getLogger(__name__)

AF_XDP = 44
"""``socket.AF_XDP`` (Linux); not every Python build names it."""


AUTO_PMD_MIN_CPUS = 2
"""``--port-io auto`` polls AF_XDP ports with a PMD thread (pinned to one core)
on hosts with at least this many CPUs.  Measured on these 2-CPU machines, same
runs: a PMD moved 1.45-1.7x what the main thread did (1.06-1.12 against
0.71-0.74 Gbit/s at load 9), at 5.5-6 us of CPU per packet against 8.5-11.5,
with a lower ping (0.4-0.7 ms), while an idle one costs ~11 % of its core
(``pmd_max_sleep_us``); on a single CPU a pinned poller would only compete
with everything else, so the main thread polls there."""

AFXDP_MAX_MTU = 4096 - 256 - 128 - 14
"""The largest MTU an OVS AF_XDP port carries: one umem frame (4096) less
XDP_PACKET_HEADROOM (256), OVS_XDP_HEADROOM (128) and the Ethernet header."""


def fits_afxdp(mtu: int | None) -> bool:
    """Whether a port of ``mtu`` (None: not known, the device's default) may be AF_XDP."""
    return mtu is None or mtu <= AFXDP_MAX_MTU


def with_mtu_note(why: str, wanted: str, mtus: dict[str, int | None]) -> str:
    """``why`` led by the ports (``mtus``: kind -> MTU) too large for AF_XDP, if any."""
    large = [f"{what} MTU {mtu}" for what, mtu in mtus.items() if not fits_afxdp(mtu)]
    if not large or wanted == "afpacket":
        return why
    return f"{' and '.join(large)} above AF_XDP's {AFXDP_MAX_MTU}: AF_PACKET for those ports; {why}"


@dataclass(frozen=True, slots=True)
class XdpProbe:
    """What is known of AF_XDP here: ``supported`` None until a port has tried it."""

    supported: bool | None
    reason: str


UNKNOWN = XdpProbe(None, "not tried yet")


def choose(wanted: str, dp_type: str | None, probe: XdpProbe,
           cpus: int = 1) -> tuple[str, str]:
    """(the I/O to ask for the next port -- ``afxdp``, ``afxdp-pmd`` or
    ``afpacket`` -- and why).  ``wanted`` is the ``--port-io`` setting, ``cpus``
    how many CPUs the router may use (``auto`` polls with a PMD from
    ``AUTO_PMD_MIN_CPUS`` on)."""
    if dp_type != "netdev":
        return "afpacket", f"{dp_type or 'unknown'} datapath: kernel ports, no port I/O to choose"
    if wanted == "afpacket":
        return "afpacket", "AF_PACKET asked for (--port-io afpacket)"
    if probe.supported is False:
        return "afpacket", f"AF_XDP unusable here: {probe.reason}"
    pmd = wanted == "afxdp-pmd" or (wanted == "auto" and cpus >= AUTO_PMD_MIN_CPUS)
    io = "afxdp-pmd" if pmd else "afxdp"
    threads = ""
    if wanted == "auto":
        count = f"{cpus} CPU{'' if cpus == 1 else 's'}"
        threads = (f", a PMD thread: {count}" if pmd else
                   f", polled by the main thread: {count}, PMDs from {AUTO_PMD_MIN_CPUS}")
    if probe.supported:
        return io, f"AF_XDP works here ({probe.reason}){threads}"
    return io, f"AF_XDP to be tried on the first port{threads}"


def pmd_other_config(port_io: str, cpu_mask: str | None, max_sleep_us: int,
                     cpus: frozenset[int] = frozenset()) -> list[str]:
    """The ``other_config`` settings (``key=value``) for PMD threads; none unless
    PMD ports are wanted.  Without a mask, the PMD is pinned to the last CPU of
    ``cpus`` (the router's affinity; one PMD is enough for a host's containers,
    and the last core is the one least likely to take the NIC's interrupts);
    with no CPUs known, OVS's default.  ``pmd-maxsleep`` is OVS 3.1's name,
    ``pmd-sleep-max`` 3.2's and later's; each version ignores the other's key."""
    if port_io != "afxdp-pmd":
        return []
    out = [f"other_config:pmd-maxsleep={max_sleep_us}",
           f"other_config:pmd-sleep-max={max_sleep_us}"]
    if cpu_mask is None and cpus:
        cpu_mask = hex(1 << max(cpus))
    if cpu_mask is not None:
        out.insert(0, f"other_config:pmd-cpu-mask={cpu_mask}")
    return out


def threads(port_io: str, cpu_mask: str | None, max_sleep_us: int,
            cpus: frozenset[int] = frozenset()) -> str:
    """Who polls the ports, for ``status``."""
    if port_io != "afxdp-pmd":
        return "vswitchd's main thread"
    config = dict(kv.split(":", 1)[1].split("=", 1)
                  for kv in pmd_other_config(port_io, cpu_mask, max_sleep_us, cpus))
    mask = config.get("pmd-cpu-mask", "OVS's default")
    return f"PMD on CPU mask {mask}, idle sleep up to {max_sleep_us} us"


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


def usable_cpus() -> frozenset[int]:
    """The CPUs this process may run on (its affinity), else all it can count."""
    try:
        return frozenset(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return frozenset(range(os.cpu_count() or 1))


def check_mask(cpu_mask: str | None, cpus: frozenset[int]) -> None:
    """Refuse a PMD mask that names none of ``cpus`` (the router's affinity).

    OVS starts no polling thread for such a mask, so every PMD port would sit
    unpolled and pass no traffic, with nothing in ``status`` but silence.
    Raised at construction, so ``launch`` fails with the reason instead.
    """
    if cpu_mask is None or not cpus:
        return
    bits = int(cpu_mask, 16)
    if not any(bits >> cpu & 1 for cpu in cpus):
        usable = ",".join(str(cpu) for cpu in sorted(cpus))
        raise ConfigError(f"PMD CPU mask {cpu_mask} names none of the CPUs this router may "
                          f"use ({usable}): OVS would start no polling thread, and its "
                          "ports would pass no traffic")


class PortIo:
    """One datapath's choice, kept for its life: ``wanted()`` for the next port,
    ``result`` hears each AF_XDP attempt, ``probe`` runs ``static_probe`` once."""

    def __init__(self, setting: str, cpus: frozenset[int] | None = None,
                 cpu_mask: str | None = None) -> None:
        self.setting = setting
        self.cpus = cpus if cpus is not None else usable_cpus()
        if setting != "afpacket":
            check_mask(cpu_mask, self.cpus)
        self.dp_type: str | None = None
        self.state = UNKNOWN
        self._probed = False

    def wanted(self) -> str:
        return choose(self.setting, self.dp_type, self.state, len(self.cpus))[0]

    def why(self) -> str:
        return choose(self.setting, self.dp_type, self.state, len(self.cpus))[1]

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

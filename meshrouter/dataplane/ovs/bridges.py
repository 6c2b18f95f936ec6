"""The integration bridge, the flow-based VXLAN port and (netdev) the underlay bridge.

ovs-lab/NOTES.md section 1: with the userspace datapath, native tunnelling looks
the tunnel destination up in OVS's own route table and needs the output device to
be an OVS bridge's LOCAL port.  So the underlay device becomes a port of
``phy_bridge`` and its IPv4 addresses and gateway routes move onto that bridge's
LOCAL port (a tap), with the device's MAC pinned as the bridge's (so neighbours'
ARP caches stay right).  What was moved is saved (atomically) before moving, so a
crashed router restores it on its next start or stop.

Every step is idempotent (``--may-exist``), so recovery after an OVS restart just
runs the whole setup again.  A port that already exists is never re-typed:
changing an AF_XDP port's mode on a live port crashed vswitchd 3.1 (NOTES section 4).
"""

from __future__ import annotations

import ipaddress
import json
import logging
from collections.abc import Callable
from typing import Any

from meshrouter.dataplane import netlink
from meshrouter.dataplane.core.pipeline import TUNNEL_PORT
from meshrouter.dataplane.ovs.portio import AFXDP_MAX_MTU, fits_afxdp
from meshrouter.dataplane.ovs.settings import OvsSettings
from meshrouter.dataplane.ovs.tools import OvsToolError, OvsTools
from meshrouter.errors import UnavailableError
from meshrouter.storage import atomic_write

log = logging.getLogger(__name__)

TUNNEL_IFNAME = "mr-vxlan"
AFXDP_TYPE = {"afxdp": "afxdp-nonpmd", "afxdp-pmd": "afxdp"}


def parse_json_table(text: str) -> list[dict[str, Any]]:
    """Rows of ``ovs-vsctl --format=json list``; maps and sets become dict/list."""
    data = json.loads(text)
    headings = data["headings"]
    return [{h: _value(v) for h, v in zip(headings, row, strict=True)} for row in data["data"]]


def _value(v: Any) -> Any:
    if isinstance(v, list) and len(v) == 2 and v[0] == "map":
        return {str(k): _value(x) for k, x in v[1]}
    if isinstance(v, list) and len(v) == 2 and v[0] == "set":
        return [_value(x) for x in v[1]]
    if isinstance(v, list) and len(v) == 2 and v[0] == "uuid":
        return v[1]
    return v


async def interface(tools: OvsTools, name: str) -> dict[str, Any] | None:
    try:
        text = await tools.vsctl(
            "--format=json", "--columns=name,type,ofport,error,external_ids,options",
            "find", "Interface", f"name={name}",
        )
    except OvsToolError:
        return None
    rows = parse_json_table(text)
    return rows[0] if rows else None


async def setup_integration(tools: OvsTools, s: OvsSettings, dp_type: str) -> None:
    """The integration bridge (secure: no flow, no forwarding) and the tunnel port."""
    await tools.vsctl(
        "--may-exist", "add-br", s.bridge,
        "--", "set", "bridge", s.bridge, f"datapath_type={dp_type}", "fail_mode=secure",
        "protocols=OpenFlow10,OpenFlow13,OpenFlow14,OpenFlow15",
        "other_config:disable-in-band=true",
        "--", "--may-exist", "add-port", s.bridge, TUNNEL_IFNAME,
        "--", "set", "interface", TUNNEL_IFNAME, "type=vxlan", f"ofport_request={TUNNEL_PORT}",
        "options:remote_ip=flow", "options:key=flow", f"options:dst_port={s.vxlan_port}",
    )
    row = await interface(tools, TUNNEL_IFNAME)
    if row is None or row.get("ofport") != TUNNEL_PORT:
        error = row.get("error") if row else "missing"
        raise UnavailableError(f"tunnel port {TUNNEL_IFNAME} not at ofport {TUNNEL_PORT}: {error}")


def _port_type(port_io: str, mtu: int | None) -> str:
    """The OVS interface type a port gets now: AF_XDP's when asked and its MTU fits,
    else "" (a netdev port: AF_PACKET on the userspace datapath)."""
    return AFXDP_TYPE[port_io] if port_io in AFXDP_TYPE and fits_afxdp(mtu) else ""


async def add_port_with_io(
    tools: OvsTools, bridge: str, ifname: str, port_io: str, extra: list[str],
    *, fresh: bool = False, xdp_mode: str = "generic",
    on_xdp: Callable[[bool, str], None] | None = None, mtu: int | None = None,
) -> tuple[str, dict[str, Any]]:
    """Add ``ifname`` (with ``extra`` interface settings) on AF_XDP when asked and it
    works, else AF_PACKET; returns which, and the interface's row.

    The mode is set at creation only: a working port is kept as it is unless
    ``fresh`` (its device was just made, so any row is stale and is replaced in
    the same transaction).  Two tool calls in the usual case: add, then read back
    ``ofport`` (vswitchd fills it in after the commit).  ``on_xdp(ok, detail)``
    hears how an AF_XDP attempt went (``portio.after_attempt``).  A port whose
    ``mtu`` AF_XDP cannot carry gets AF_PACKET without an attempt
    (``portio.fits_afxdp``).
    """
    if not fresh:
        existing = await interface(tools, ifname)
        if existing is not None and existing.get("ofport", -1) not in (-1, None, []):
            current = str(existing.get("type") or "")
            if current == _port_type(port_io, mtu):
                io = "afxdp" if current.startswith("afxdp") else "afpacket"
                return io, existing
            # left by an older router or another setting (an AF_XDP port whose MTU
            # grew past AF_XDP's limit black-holes big frames): made again below
            log.info("%s: port type %r, now %r: re-adding it", ifname, current,
                     _port_type(port_io, mtu))
    if port_io in AFXDP_TYPE and not fits_afxdp(mtu):
        log.info("%s: MTU %s is above AF_XDP's %d: AF_PACKET", ifname, mtu, AFXDP_MAX_MTU)
    elif port_io in AFXDP_TYPE:
        kind = f"{AFXDP_TYPE[port_io]} xdp-mode={xdp_mode}"
        try:
            await tools.vsctl(
                "--if-exists", "del-port", ifname, "--", "add-port", bridge, ifname,
                "--", "set", "interface", ifname,
                f"type={AFXDP_TYPE[port_io]}", f"options:xdp-mode={xdp_mode}", *extra,
            )
            row = await interface(tools, ifname)
            if row is not None and isinstance(row.get("ofport"), int) and row["ofport"] > 0:
                if on_xdp is not None:
                    on_xdp(True, f"{kind} on {ifname}")
                return "afxdp", row
            error = f"{kind} on {ifname}: {(row.get('error') if row else None) or 'no port'}"
        except OvsToolError as exc:
            error = f"{kind} on {ifname}: {exc}"
        log.warning("AF_XDP port failed (%s); using AF_PACKET", error)
        if on_xdp is not None:
            on_xdp(False, error)
    args = ["--", "set", "interface", ifname, *extra] if extra else []
    await tools.vsctl("--if-exists", "del-port", ifname, "--", "add-port", bridge, ifname, *args)
    row = await interface(tools, ifname)
    return "afpacket", row or {}


def _is_loopback(address: str | None) -> bool:
    if not address:
        return False
    try:
        return ipaddress.ip_address(address.rsplit(":", 1)[0] if address.count(":") == 1
                                    else address).is_loopback
    except ValueError:
        return address == "localhost"


class UnderlayBridge:
    """``phy_bridge`` holding the underlay device, with the host's IP on its LOCAL port."""

    def __init__(self, tools: OvsTools, s: OvsSettings, netns_path: str | None) -> None:
        self.tools = tools
        self.s = s
        self.netns_path = netns_path
        self.state_file = s.ovs_dir / "underlay.json"
        self.underlay: netlink.Underlay | None = None
        self.io = "afpacket"

    async def discover(self) -> netlink.Underlay:
        """What the underlay is: the saved record (we moved it before) or the device now."""
        if self.state_file.exists():
            try:
                saved = netlink.Underlay.from_json(json.loads(self.state_file.read_text()))
                self.underlay = saved
                return saved
            except (ValueError, KeyError, TypeError) as exc:
                log.error("ignoring unreadable %s: %s", self.state_file, exc)
        s = self.s

        if s.underlay_dev is None and _is_loopback(s.listen_address):
            # a router meshing over loopback (tests, one-host trials) has no
            # underlay; guessing the default route's device would take the
            # host's real address away from it
            raise UnavailableError(
                f"the router listens on {s.listen_address}: no underlay device to put under "
                "OVS; give --underlay-dev, or run with --datapath none")

        def find() -> netlink.Underlay:
            dev = s.underlay_dev
            if dev is None and s.listen_address not in (None, "", "0.0.0.0"):
                dev = netlink.dev_for_address(str(s.listen_address))
            if dev is None:
                dev = netlink.default_route_dev()
            if dev is None:
                raise UnavailableError("no underlay device: give --underlay-dev "
                                       "(there is no default route)")
            return netlink.read_underlay(dev)

        found = await netlink.in_netns(self.netns_path, find)
        self.underlay = found
        return found

    async def setup(self, port_io: str, xdp_mode: str = "generic",
                    on_xdp: Callable[[bool, str], None] | None = None) -> None:
        underlay = self.underlay or await self.discover()
        if not underlay.addresses:
            raise UnavailableError(f"underlay device {underlay.dev} has no IPv4 address")
        s = self.s
        await self.tools.vsctl(
            "--may-exist", "add-br", s.phy_bridge, "--", "set", "bridge", s.phy_bridge,
            "datapath_type=netdev", f'other_config:hwaddr="{underlay.mac}"',
            # the LOCAL port carries the host's own traffic: same MTU as the device
            "--", "set", "interface", s.phy_bridge, f"mtu_request={underlay.mtu}",
        )
        if not self.state_file.exists():
            s.ovs_dir.mkdir(parents=True, exist_ok=True)
            atomic_write(self.state_file, json.dumps(underlay.to_json()).encode())
        self.io, _ = await add_port_with_io(self.tools, s.phy_bridge, underlay.dev, port_io, [],
                                            xdp_mode=xdp_mode, on_xdp=on_xdp, mtu=underlay.mtu)
        await netlink.in_netns(
            self.netns_path, lambda: netlink.move_addresses(underlay, underlay.dev, s.phy_bridge)
        )

    async def restore(self) -> None:
        """Give the underlay device its addresses back and take it out of OVS."""
        underlay = self.underlay
        if underlay is None and self.state_file.exists():
            underlay = await self.discover()
        if underlay is None:
            return
        try:
            await netlink.in_netns(
                self.netns_path,
                lambda: netlink.move_addresses(underlay, self.s.phy_bridge, underlay.dev),
            )
        except Exception as exc:  # restore what we can; the addresses matter most
            log.error("cannot move underlay addresses back to %s: %s", underlay.dev, exc)
            return
        try:
            await self.tools.vsctl("--if-exists", "del-port", self.s.phy_bridge, underlay.dev)
        except OvsToolError as exc:
            log.warning("cannot take %s out of %s: %s", underlay.dev, self.s.phy_bridge, exc)
        self.state_file.unlink(missing_ok=True)

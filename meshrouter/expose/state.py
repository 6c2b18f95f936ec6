"""Theory of operation: the host on its own overlay (``weave expose``), the pure part.

A container attached to the overlay reaches other containers, never its host:
the host has no address on the overlay.  Exposing gives the host one, from
IPAM like any container's, on ``mr-expose``: a veth whose "container" end
stays in the host's own namespace and whose other end is a port of the
integration bridge, attached through the dataplane service under the
container ID ``host-<peer name>``.  So flows, anti-spoofing, ARP answers and
the endpoints gossip treat the host like any endpoint, and the address (with
its prefix) gives the host a route to the whole range.  The built-in DNS
server listens on that address: it is the nameserver containers can reach.

What is remembered (``ExposeState``, in the data directory): whether the user
exposed or hid the host (``mode``), the address it had (so a restart keeps
it), and the address the user asked for.  ``auto`` (no state yet) means the
router decides; see ``auto_wanted``.  Pure: no I/O; the service moves bytes.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from meshrouter.codec import expect, pack, unpack
from meshrouter.endpoints.requests import parse_cidr as parse_attach_cidr
from meshrouter.errors import InvalidRequestError, ProtocolError, StateFileError
from meshrouter.names import PeerName, format_peer_name

IFNAME = "mr-expose"
"""The host's end of the veth (in the host's namespace): short, fixed, recognisable."""

Mode = Literal["auto", "exposed", "hidden"]
MODES: tuple[Mode, ...] = ("auto", "exposed", "hidden")
MAX_STATE = 1024


def host_container_id(peer: PeerName) -> str:
    """The container ID under which this host's port is attached.

    Container IDs allow letters, digits, ``_ . -`` only, so the peer name's
    colons are dropped: ``host-aabbccddeeff``."""
    return "host-" + format_peer_name(peer).replace(":", "")


@dataclass(frozen=True, slots=True)
class ExposeState:
    """What the user asked and what the host got (persisted)."""

    mode: Mode = "auto"
    cidr: str | None = None
    """The address the host has (or had: kept after a restart), ``A.B.C.D/P``."""
    asked: str | None = None
    """The address the user gave (``expose --ip``), or None for one from IPAM."""

    def encode(self) -> bytes:
        return pack({"v": 1, "mode": self.mode, "cidr": self.cidr or "",
                     "asked": self.asked or ""})

    @classmethod
    def decode(cls, blob: bytes) -> ExposeState:
        """The state file's content; ``StateFileError`` saying what is wrong."""
        if len(blob) > MAX_STATE:
            raise StateFileError(f"expose state is {len(blob)} bytes (at most {MAX_STATE})")
        try:
            raw = expect(unpack(blob), dict, "expose state")
            mode = expect(raw.get("mode"), str, "expose mode")
            cidr = expect(raw.get("cidr", ""), str, "expose address")
            asked = expect(raw.get("asked", ""), str, "expose asked address")
        except ProtocolError as exc:
            raise StateFileError(f"expose state is corrupt: {exc}") from None
        if mode not in MODES:
            raise StateFileError(f"expose state is corrupt: mode {mode[:20]!r}")
        for text in (cidr, asked):
            if text:
                try:
                    parse_cidr(text)
                except InvalidRequestError as exc:
                    raise StateFileError(f"expose state is corrupt: {exc}") from None
        return cls(mode, cidr or None, asked or None)  # type: ignore[arg-type]


def parse_cidr(text: str) -> ipaddress.IPv4Interface:
    """``A.B.C.D/P`` with a usable unicast host address, else InvalidRequestError: the
    checks of an attach address (``endpoints.requests.parse_cidr``), and a prefix,
    required here because it sets the host's route to the overlay."""
    ip, prefix = parse_attach_cidr(text)
    if ip is None or prefix is None:
        raise InvalidRequestError(f"ip {text[:60]} needs its prefix length (A.B.C.D/P): it "
                                  "sets the host's route to the overlay")
    if ip.is_link_local:
        raise InvalidRequestError(f"ip {ip} is not a usable unicast address")
    if prefix < 8 or prefix > 30:
        raise InvalidRequestError(f"ip {text[:60]}: prefix /{prefix} out of range (/8../30)")
    return ipaddress.IPv4Interface(f"{ip}/{prefix}")


def parse_expose_request(body: Mapping[str, Any]) -> str | None:
    """The body of ``POST /expose``: ``{}`` or ``{"ip": "A.B.C.D/P"}``."""
    unknown = set(body) - {"ip"}
    if unknown:
        raise InvalidRequestError(f"unknown expose field(s): {', '.join(sorted(unknown)[:5])}")
    ip = body.get("ip")
    if ip is None or ip == "":
        return None
    if not isinstance(ip, str):
        raise InvalidRequestError("ip must be a string like 10.32.0.1/12")
    return str(parse_cidr(ip))


def auto_wanted(state: ExposeState, *, datapath_kind: str, dns_wants: bool,
                ring_ready: bool) -> bool:
    """Whether the router exposes the host by itself now.

    Only while the user has said nothing (``auto``), with a real datapath
    (OVS: the simulator's memory datapath and ``--datapath none`` have no host
    side), when DNS wants an address for containers, and once an address ring
    exists: the host's allocation must never be the request that founds a
    ring in consensus mode (a router launched alone would found a cluster of
    its own and refuse the mesh it is connected to later)."""
    return (state.mode == "auto" and datapath_kind.startswith("ovs") and dns_wants
            and ring_ready)


def same_address(a: str | None, b: str | None) -> bool:
    """Whether two ``A.B.C.D[/P]`` texts name the same host address."""
    if a is None or b is None:
        return a is b
    return ipaddress.ip_interface(a).ip == ipaddress.ip_interface(b).ip

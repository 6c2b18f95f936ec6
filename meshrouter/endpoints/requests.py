"""Theory of operation: attach requests from the API, validated before anything is made.

A request is checked completely (types, lengths, CIDR, MTU) before any address
is taken or any port is created, so bad input never leaves anything
half-made and the error names the field.  Pure: no I/O, no trio.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from meshrouter.endpoints.model import MAX_NAME, check_container_id
from meshrouter.errors import InvalidRequestError

MIN_MTU = 576
MAX_MTU = 65_535
MAX_NETNS = 4096
_IFNAME = re.compile(r"^[A-Za-z0-9_.\-]{1,15}$")


@dataclass(frozen=True, slots=True)
class AttachRequest:
    """A validated ``POST /attach`` body."""

    container_id: str
    netns: str
    ip: ipaddress.IPv4Address | None = None
    prefix: int | None = None
    name: str = ""
    ifname: str = "eth0"
    mtu: int | None = None


def parse_attach(body: Mapping[str, Any]) -> AttachRequest:
    """The body of ``POST /attach``; InvalidRequestError names the bad field."""
    unknown = set(body) - {"container_id", "netns", "ip", "name", "ifname", "mtu"}
    if unknown:
        raise InvalidRequestError(f"unknown attach field(s): {', '.join(sorted(unknown))}")
    container_id = _text(body, "container_id", required=True)
    try:
        check_container_id(container_id)
    except ValueError as exc:
        raise InvalidRequestError(str(exc)) from None
    netns = _text(body, "netns", required=True)
    if len(netns) > MAX_NETNS or "\0" in netns:
        raise InvalidRequestError("netns must be a namespace name, a path or a PID")
    name = _text(body, "name")
    if len(name) > MAX_NAME:
        raise InvalidRequestError(f"name is longer than {MAX_NAME} characters")
    ifname = _text(body, "ifname") or "eth0"
    if not _IFNAME.match(ifname):
        raise InvalidRequestError(f"ifname {ifname[:40]!r} must be 1-15 letters, digits, _ . -")
    mtu = body.get("mtu")
    if mtu is not None and (not isinstance(mtu, int) or isinstance(mtu, bool)
                            or not MIN_MTU <= mtu <= MAX_MTU):
        raise InvalidRequestError(f"mtu must be an integer {MIN_MTU}..{MAX_MTU}")
    ip, prefix = parse_cidr(_text(body, "ip"))
    return AttachRequest(container_id, netns, ip, prefix, name, ifname, mtu)


def parse_cidr(text: str) -> tuple[ipaddress.IPv4Address | None, int | None]:
    """``A.B.C.D[/N]`` -> (address, prefix or None); empty -> (None, None)."""
    if not text:
        return None, None
    try:
        iface = ipaddress.ip_interface(text.strip())
    except ValueError:
        raise InvalidRequestError(f"ip {text[:60]!r} is not an IPv4 address, alone or in "
                                  "CIDR form (A.B.C.D[/P])") from None
    if not isinstance(iface, ipaddress.IPv4Interface):
        raise InvalidRequestError(f"ip {text} is not IPv4")
    address = iface.ip
    if address.is_multicast or address.is_unspecified or address.is_loopback:
        raise InvalidRequestError(f"ip {address} is not a usable unicast address")
    prefix = iface.network.prefixlen if "/" in text else None
    # a /31 has no network or broadcast address (RFC 3021), a /32 is the address alone
    if prefix is not None and prefix < 31 and address in (iface.network.network_address,
                                                          iface.network.broadcast_address):
        raise InvalidRequestError(f"ip {text} is the network or broadcast address")
    return address, prefix


def _text(body: Mapping[str, Any], key: str, *, required: bool = False) -> str:
    value = body.get(key)
    if value is None or value == "":
        if required:
            raise InvalidRequestError(f"{key} is required")
        return ""
    if not isinstance(value, str):
        raise InvalidRequestError(f"{key} must be a string")
    return value

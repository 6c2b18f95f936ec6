"""The allocation range (``--ipalloc-range``) and conversions between addresses
and the integers the ring works with.

The ring stores addresses as plain integers so that splitting, comparing and
encoding ranges is arithmetic; only the edges (CLI, API, status) see text.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from meshrouter.errors import ConfigError, IpamInvalidError

DEFAULT_RANGE = "10.32.0.0/12"
MIN_PREFIX_ADDRESSES = 4


@dataclass(frozen=True, slots=True)
class AddressRange:
    """An IPv4 CIDR: addresses ``start`` (network) up to ``end`` (exclusive)."""

    network: ipaddress.IPv4Network

    @classmethod
    def parse(cls, text: str) -> AddressRange:
        try:
            network = ipaddress.ip_network(text.strip(), strict=True)
        except ValueError as exc:
            raise ConfigError(f"--ipalloc-range {text!r} is not a CIDR: {exc}") from None
        if not isinstance(network, ipaddress.IPv4Network):
            raise ConfigError(f"--ipalloc-range {text!r}: only IPv4 ranges are supported")
        if network.num_addresses < MIN_PREFIX_ADDRESSES:
            raise ConfigError(f"--ipalloc-range {text!r} is too small (at least a /30)")
        return cls(network)

    @property
    def start(self) -> int:
        return int(self.network.network_address)

    @property
    def end(self) -> int:
        return int(self.network.broadcast_address) + 1

    @property
    def size(self) -> int:
        return self.network.num_addresses

    def __str__(self) -> str:
        return str(self.network)

    def usable(self, address: int) -> bool:
        """Inside the range and not its network or broadcast address."""
        return self.start < address < self.end - 1

    def format(self, address: int) -> str:
        """``10.32.0.5/12``: the address with the range's prefix, as Weave answers."""
        return f"{ipaddress.IPv4Address(address)}/{self.network.prefixlen}"

    def parse_address(self, text: str) -> int:
        """An address given by a user; must be a usable address of the range."""
        try:
            address = int(ipaddress.IPv4Address(text.strip().split("/", 1)[0]))
        except ValueError:
            raise IpamInvalidError(f"{text!r} is not an IPv4 address") from None
        if not self.usable(address):
            raise IpamInvalidError(
                f"{ipaddress.IPv4Address(address)} is not a usable address of the "
                f"allocation range {self.network}")
        return address

    def parse_subnet(self, text: str) -> tuple[int, int]:
        """A subnet given by a user, as ``(start, end)``; must lie inside the range."""
        try:
            subnet = ipaddress.ip_network(text.strip(), strict=False)
        except ValueError:
            raise IpamInvalidError(f"{text!r} is not a CIDR subnet") from None
        if not isinstance(subnet, ipaddress.IPv4Network) or not subnet.subnet_of(self.network):
            raise IpamInvalidError(
                f"subnet {text} is not inside the allocation range {self.network}"
            )
        return int(subnet.network_address), int(subnet.broadcast_address) + 1


def format_address(address: int) -> str:
    return str(ipaddress.IPv4Address(address))


def overlapping_route(network: ipaddress.IPv4Network, routes: list[str]) -> str | None:
    """The first of the host's route destinations that overlaps ``network``.

    A default route (0.0.0.0/0) overlaps everything and is ignored; any other
    overlap (a LAN, a VPN, a larger private network) would shadow containers
    or be shadowed by them, so it is reported.
    """
    for text in routes:
        try:
            route = ipaddress.ip_network(text, strict=False)
        except ValueError:
            continue
        if not isinstance(route, ipaddress.IPv4Network) or route.prefixlen == 0:
            continue
        if route.overlaps(network):
            return text
    return None

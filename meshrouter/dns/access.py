"""Theory of operation: who may ask -- never an open resolver.

By default only this host (loopback and the host's own addresses) and the
overlay's ranges may query; anything else gets REFUSED (same size as the query,
so a spoofed source cannot use us to amplify).  The decision is cached per
source address in a bounded table, since it is asked for every packet.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable

MAX_CACHE = 4096


class ClientFilter:
    def __init__(self, networks: Iterable[str], local_addresses: Iterable[str] = ()) -> None:
        self.networks = [ipaddress.ip_network(n, strict=False) for n in networks]
        self.local_addresses = {str(ipaddress.ip_address(a)) for a in local_addresses}
        self.extra_networks: list[ipaddress.IPv4Network | ipaddress.IPv6Network] = []
        self._cache: dict[str, bool] = {}

    def set_extra_networks(self, networks: Iterable[str]) -> None:
        """Networks allowed besides the configured ones (the exposed address's
        network: without IPAM no overlay range is configured, yet containers
        on it are clients)."""
        self.extra_networks = [ipaddress.ip_network(n, strict=False) for n in networks]
        self._cache.clear()

    def set_local_addresses(self, addresses: Iterable[str]) -> None:
        self.local_addresses = {str(ipaddress.ip_address(a)) for a in addresses}
        self._cache.clear()

    def allows(self, source: str) -> bool:
        cached = self._cache.get(source)
        if cached is not None:
            return cached
        try:
            ip = ipaddress.ip_address(source.split("%", 1)[0])
        except ValueError:
            return False
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped
        allowed = (ip.is_loopback or str(ip) in self.local_addresses
                   or any(ip in net for net in (*self.networks, *self.extra_networks)
                          if net.version == ip.version))
        if len(self._cache) >= MAX_CACHE:
            self._cache.clear()
        self._cache[source] = allowed
        return allowed

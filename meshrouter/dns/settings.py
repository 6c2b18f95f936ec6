"""Theory of operation: the DNS settings and the pure parsing behind them.

``DnsSettings`` is what the CLI fills in (the lead wires it into RouterConfig):
the domain, where to listen, the upstream servers (given, or read from a
resolv.conf), the TTL, and who may ask.  Parsing is pure (text in, values out)
so it is tested without files or sockets; the server only reads files.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from meshrouter.errors import ConfigError, InvalidRequestError

from .names import canonical_name

DEFAULT_DOMAIN = "mesh.local."
DEFAULT_PORT = 53
DEFAULT_LISTEN = "127.0.0.1:53"
"""The host's own listener by default; containers use the exposed address
(``meshrouter expose``, served as well unless ``--dns-listen`` is given)."""
DEFAULT_TTL = 5
MAX_UPSTREAMS = 8

Endpoint = tuple[str, int]


@dataclass(frozen=True)
class DnsSettings:
    """How this router serves DNS.  CLI options map one to one:
    ``--no-dns`` -> enabled=False, ``--dns-domain`` -> domain, ``--dns-listen`` ->
    listen, ``--dns-upstream`` (repeatable) -> upstreams, ``--resolv-conf`` ->
    resolv_conf, ``--dns-ttl`` -> ttl."""

    enabled: bool = True
    domain: str = DEFAULT_DOMAIN
    listen: str | None = None
    """HOST[:PORT]; None = ``DEFAULT_LISTEN`` for the host plus the exposed
    address (port 53) for containers, where a failure to bind is reported in
    ``status dns`` instead of stopping the router."""
    host_listen: str = DEFAULT_LISTEN
    """The host's own listener when ``listen`` is not given (not a CLI option:
    tests and embedders move it off port 53)."""
    upstreams: tuple[str, ...] = ()
    """HOST[:PORT] each; when given, resolv.conf is not read."""
    resolv_conf: str = "/etc/resolv.conf"
    ttl: int = DEFAULT_TTL
    upstream_timeout: float = 2.0
    overlay_networks: tuple[str, ...] = ()
    """The overlay's ranges (e.g. the IPAM range): its clients may ask, and PTR
    for its addresses is answered by us (NXDOMAIN when unknown)."""
    allow_networks: tuple[str, ...] = ()
    """More client networks that may ask (besides this host and the overlay)."""
    tombstone_ttl: float = 1800.0

    def __post_init__(self) -> None:
        try:
            object.__setattr__(self, "domain", canonical_name(self.domain))
        except InvalidRequestError as exc:
            raise ConfigError(f"--dns-domain: {exc}") from None
        if not 0 <= self.ttl <= 86_400:
            raise ConfigError(f"--dns-ttl must be 0..86400 seconds, got {self.ttl}")
        if self.upstream_timeout <= 0:
            raise ConfigError("the DNS upstream timeout must be positive")
        if len(self.upstreams) > MAX_UPSTREAMS:
            raise ConfigError(f"at most {MAX_UPSTREAMS} --dns-upstream servers")
        for text in self.upstreams:
            parse_endpoint(text, DEFAULT_PORT, what="--dns-upstream")
        for listen in (self.listen, self.host_listen):
            if listen is not None:
                parse_endpoint(listen, DEFAULT_PORT, what="--dns-listen", allow_zero=True)
        for net in (*self.overlay_networks, *self.allow_networks):
            try:
                ipaddress.ip_network(net, strict=False)
            except ValueError:
                raise ConfigError(f"{net!r} is not a network (CIDR)") from None

    def listen_endpoint(self) -> Endpoint:
        """The first (primary) listener: the explicit one, else the host's."""
        return parse_endpoint(self.listen or self.host_listen, DEFAULT_PORT,
                              what="--dns-listen", allow_zero=True)

    def container_endpoints(self, exposed: str | None) -> list[Endpoint]:
        """Listeners beyond the primary one: the exposed address (port 53) when
        the host is exposed and no ``--dns-listen`` was given (an explicit
        address is the user's whole choice)."""
        if not self.enabled or self.listen is not None or exposed is None:
            return []
        return [(str(ipaddress.ip_address(exposed)), DEFAULT_PORT)]


def parse_endpoint(text: str, default_port: int, *, what: str,
                   allow_zero: bool = False) -> Endpoint:
    """``IP[:PORT]`` or ``[IPv6]:PORT`` -> (ip, port); ConfigError saying why not."""
    text = text.strip()
    host, port_text = text, ""
    if text.startswith("["):
        end = text.find("]")
        if end < 0:
            raise ConfigError(f"{what} {text!r}: missing ']'")
        host, rest = text[1:end], text[end + 1:]
        if rest and not rest.startswith(":"):
            raise ConfigError(f"{what} {text!r}: expected ':PORT' after ']'")
        port_text = rest[1:]
    elif text.count(":") == 1:
        host, port_text = text.split(":")
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        raise ConfigError(f"{what} {text!r}: {host!r} is not an IP address") from None
    port = default_port
    if port_text:
        if not port_text.isdigit():
            raise ConfigError(f"{what} {text!r}: port {port_text!r} is not a number")
        port = int(port_text)
    if not (0 if allow_zero else 1) <= port <= 65535:
        raise ConfigError(f"{what} {text!r}: port {port} out of range")
    return str(ip), port


def parse_resolv_conf(text: str, *,
                      is_self: Callable[[Endpoint], bool] | None = None) -> list[Endpoint]:
    """The ``nameserver`` entries of a resolv.conf, in order, minus ourselves
    (``is_self``: forwarding to ourselves would loop) and unparsable lines."""
    found: list[Endpoint] = []
    for line in text.splitlines():
        fields = line.split("#", 1)[0].split(";", 1)[0].split()
        if len(fields) < 2 or fields[0] != "nameserver":
            continue
        try:
            endpoint = str(ipaddress.ip_address(fields[1].split("%", 1)[0])), DEFAULT_PORT
        except ValueError:
            continue
        if (is_self is not None and is_self(endpoint)) or endpoint in found:
            continue
        found.append(endpoint)
        if len(found) == MAX_UPSTREAMS:
            break
    return found


def container_nameserver(listening: Iterable[Endpoint], exposed: str | None) -> str | None:
    """The address to give containers as their nameserver, from what is bound.

    A resolv.conf names no port, so only listeners on port 53 count.  The
    exposed address is the one every container on the overlay can reach: it
    is chosen when a listener covers it (itself or a wildcard); otherwise an
    explicit non-loopback address (``--dns-listen 172.17.0.1``: the user knows
    their containers reach it); loopback is nothing a container can reach."""
    bound = [(ipaddress.ip_address(h), p) for h, p in listening if p == DEFAULT_PORT]
    if exposed is not None:
        target = ipaddress.ip_address(exposed)
        if any(ip == target or (ip.is_unspecified and ip.version == target.version)
               for ip, _ in bound):
            return str(target)
    for ip, _ in bound:
        if not (ip.is_unspecified or ip.is_loopback):
            return str(ip)
    return None


def is_self(endpoint: Endpoint, listen: Endpoint, local_addresses: set[str]) -> bool:
    """Would a query to ``endpoint`` reach our own server listening on ``listen``?

    Listening on a wildcard address, any loopback or local address with our
    port is us (e.g. a stale ``nameserver 127.0.0.53``)."""
    host, port = endpoint
    if port != listen[1]:
        return False
    ip = ipaddress.ip_address(host)
    if ipaddress.ip_address(listen[0]).is_unspecified:
        return ip.is_loopback or ip.is_unspecified or host in local_addresses
    return ip == ipaddress.ip_address(listen[0])

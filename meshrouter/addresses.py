"""Address syntax shared by the router and its command-line client: ``HOST[:PORT]``,
``[V6]:PORT``, the default ports.

Kept apart from ``config.py`` (and importing only the standard library and
``errors``) so that client verbs, which parse ``--api`` and peer addresses,
start without importing the router's configuration.
"""

from __future__ import annotations

import ipaddress
import re

from meshrouter.errors import ConfigError

_HOSTNAME = re.compile(
    r"^(?=.{1,253}$)[A-Za-z0-9]([A-Za-z0-9-]{0,62})(\.[A-Za-z0-9]([A-Za-z0-9-]{0,62}))*\.?$"
)

DEFAULT_PORT = 6783
DEFAULT_API_PORT = 6784


def parse_host_port(
    text: str, default_port: int, *, what: str = "address", allow_zero: bool = False
) -> tuple[str, int]:
    """Parse ``HOST[:PORT]`` or ``[V6]:PORT``; raise ConfigError with the reason."""
    text = text.strip()
    if not text:
        raise ConfigError(f"empty {what}")
    host: str
    port_text: str | None
    if text.startswith("["):
        end = text.find("]")
        if end < 0:
            raise ConfigError(f"{what} {text!r}: missing ']'")
        host = text[1:end]
        rest = text[end + 1 :]
        if rest and not rest.startswith(":"):
            raise ConfigError(f"{what} {text!r}: expected ':PORT' after ']'")
        port_text = rest[1:] if rest else None
    elif text.count(":") == 1:
        host, port_text = text.split(":")
    elif text.count(":") > 1:
        host, port_text = text, None
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise ConfigError(
                f"{what} {text!r}: not HOST:PORT (write IPv6 addresses as [ADDR]:PORT)"
            ) from None
    else:
        host, port_text = text, None
    if not host:
        raise ConfigError(f"{what} {text!r}: missing host")
    if not _HOSTNAME.match(host):
        try:
            ipaddress.ip_address(host)
        except ValueError:
            raise ConfigError(
                f"{what} {text!r}: {host!r} is not a host name or IP address"
            ) from None
    port = default_port
    if port_text is not None:
        lowest = 0 if allow_zero else 1
        if not port_text.isdigit() or not lowest <= int(port_text) <= 65535:
            raise ConfigError(f"{what} {text!r}: port must be a number from {lowest} to 65535")
        port = int(port_text)
    return host, port


def format_host_port(host: str, port: int) -> str:
    """Inverse of parse_host_port, bracketing IPv6 literals."""
    try:
        if isinstance(ipaddress.ip_address(host), ipaddress.IPv6Address):
            return f"[{host}]:{port}"
    except ValueError:
        pass
    return f"{host}:{port}"


def normalise_peer_address(text: str, default_port: int = DEFAULT_PORT) -> str:
    """Canonical ``host:port`` form of a user-given PEER."""
    host, port = parse_host_port(text, default_port, what="peer address")
    return format_host_port(host, port)

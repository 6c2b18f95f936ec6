"""Theory of operation: DNS names and IPv4 addresses as the records CRDT holds them.

Every name is kept in one canonical form -- lower case, absolute (trailing dot),
labels of 1..63 characters from ``[a-z0-9_-]``, at most 253 characters without
the final dot -- so that two routers always agree whether two records name the
same thing, and lookups are case-insensitive by construction.  Addresses are
IPv4 integers (the overlay is IPv4; AAAA queries get NODATA).  These checks are
the only place names from users or the network are validated.
"""

from __future__ import annotations

import ipaddress
import re

from meshrouter.errors import InvalidRequestError

MAX_NAME_LEN = 253
_LABEL = re.compile(r"^[a-z0-9_]([a-z0-9_-]{0,61}[a-z0-9_])?$")


def canonical_name(text: str) -> str:
    """``text`` lower-cased and made absolute; InvalidRequestError if it is no DNS name."""
    name = text.strip().lower()
    if name.endswith("."):
        name = name[:-1]
    if not name:
        raise InvalidRequestError("empty DNS name")
    if len(name) > MAX_NAME_LEN:
        raise InvalidRequestError(f"DNS name {text[:64]!r}... is longer than {MAX_NAME_LEN}")
    for label in name.split("."):
        if not _LABEL.match(label):
            raise InvalidRequestError(
                f"DNS name {text!r}: label {label!r} must be 1-63 letters, digits, '-' or '_' "
                "and not start or end with '-'"
            )
    return name + "."


def is_canonical(name: str) -> bool:
    """True if ``name`` is already in canonical form (used when decoding the wire)."""
    try:
        return canonical_name(name) == name
    except InvalidRequestError:
        return False


def in_domain(name: str, domain: str) -> bool:
    """``name`` (canonical) is ``domain`` (canonical) or below it."""
    return name == domain or name.endswith("." + domain)


def qualify(text: str, domain: str) -> str:
    """A user's name as a record name under ``domain``.

    A name without a trailing dot is relative: ``web`` and ``web.prod`` become
    ``web.mesh.local.`` and ``web.prod.mesh.local.`` (unless already ending in the
    domain).  An absolute name (trailing dot) must lie inside the domain.
    """
    absolute = text.strip().endswith(".")
    name = canonical_name(text)
    if in_domain(name, domain) and name != domain:
        return name
    if absolute:
        raise InvalidRequestError(f"DNS name {text!r} is outside the domain {domain}")
    return canonical_name(name + domain)


def parse_ipv4(text: str) -> int:
    """Dotted IPv4 -> int; InvalidRequestError otherwise."""
    try:
        return int(ipaddress.IPv4Address(text.strip()))
    except ValueError:
        raise InvalidRequestError(f"{text!r} is not an IPv4 address") from None


def format_ipv4(value: int) -> str:
    return str(ipaddress.IPv4Address(value))


def reverse_name(address: int) -> str:
    """The in-addr.arpa name of an IPv4 address."""
    octets = address.to_bytes(4, "big")
    return ".".join(str(o) for o in reversed(octets)) + ".in-addr.arpa."


def parse_reverse_name(name: str) -> int | None:
    """The IPv4 address of a full ``d.c.b.a.in-addr.arpa.`` name, else None."""
    if not name.endswith(".in-addr.arpa."):
        return None
    parts = name[: -len(".in-addr.arpa.")].split(".")
    if len(parts) != 4 or not all(p.isdigit() and len(p) <= 3 for p in parts):
        return None
    values = [int(p) for p in reversed(parts)]
    if any(v > 255 or str(v) != p for v, p in zip(values, reversed(parts), strict=True)):
        return None
    return int.from_bytes(bytes(values), "big")

"""Peer names and short IDs.

A peer name is a 48-bit integer written like a MAC address (``aa:bb:cc:dd:ee:ff``),
as in Weave.  Keeping it an ``int`` makes topology maps and route tables cheap,
which matters when the simulator runs a thousand routers in one process.
A short ID is a 12-bit number that later fits two of them into a 24-bit VXLAN VNI.
"""

from __future__ import annotations

import hashlib
from typing import NewType

from meshrouter.errors import ConfigError

PeerName = NewType("PeerName", int)
ShortID = NewType("ShortID", int)

PEER_NAME_BITS = 48
PEER_NAME_MAX = (1 << PEER_NAME_BITS) - 1
SHORT_ID_BITS = 12
SHORT_ID_COUNT = 1 << SHORT_ID_BITS


def format_peer_name(name: int) -> str:
    """Render a peer name as six colon-separated hex octets."""
    raw = f"{name:012x}"
    return ":".join(raw[i : i + 2] for i in range(0, 12, 2))


def parse_peer_name(text: str) -> PeerName:
    """Parse ``aa:bb:cc:dd:ee:ff`` (or 12 hex digits) into a PeerName."""
    cleaned = text.strip().lower().replace(":", "").replace("-", "")
    if len(cleaned) != 12:
        raise ConfigError(f"peer name {text!r} must be 6 hex octets like 5a:1e:00:00:00:01")
    try:
        value = int(cleaned, 16)
    except ValueError:
        raise ConfigError(f"peer name {text!r} is not hexadecimal") from None
    return PeerName(value)


def peer_name_from_seed(seed: bytes) -> PeerName:
    """Derive a stable, locally administered unicast MAC-like name from bytes.

    The first octet gets the locally-administered bit set and the multicast bit
    cleared, exactly as a generated MAC address would.
    """
    digest = bytearray(hashlib.sha256(seed).digest()[:6])
    digest[0] = (digest[0] | 0x02) & 0xFE
    return PeerName(int.from_bytes(digest, "big"))


def check_peer_name(value: object) -> PeerName:
    """Validate a decoded peer name (from the network) and return it typed."""
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= PEER_NAME_MAX:
        from meshrouter.errors import MalformedMessageError

        raise MalformedMessageError(f"invalid peer name {value!r}")
    return PeerName(value)

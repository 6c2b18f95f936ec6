"""Theory of operation: the dataplane service's state file, encoded and checked.

A router saves, in one atomic write, its endpoint table and the port requests
of the containers attached here (plus the one being attached), so that after a
restart it re-makes the ports it had and never forgets an endpoint its peers
have learned.  This module is only the file's format: msgpack of
``{"table": bytes, "ports": [[container, netns, ifname, mac, ip, prefix, mtu,
from_ipam], ...]}``.  Decoding checks every field's type, so a damaged or
hand-edited file is refused with a ``StateFileError`` that names the field,
never half-loaded.  Pure: no I/O; the service does the storage.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from meshrouter.codec import expect, pack, unpack
from meshrouter.errors import ProtocolError, StateFileError

MAX_SAVED_PORTS = 100_000


@dataclass(frozen=True, slots=True)
class SavedPort:
    """One container port of ours as saved: enough to re-make it after a restart."""

    container_id: str
    netns: str
    ifname: str
    mac: str
    ip: str
    prefix: int
    mtu: int | None
    from_ipam: bool


def encode_state(table: bytes, ports: Iterable[SavedPort]) -> bytes:
    """The state file's bytes for the endpoint table dump and our ports."""
    rows = [[p.container_id, p.netns, p.ifname, p.mac, p.ip, p.prefix, p.mtu, p.from_ipam]
            for p in ports]
    return pack({"table": table, "ports": rows})


def decode_state(blob: bytes) -> tuple[bytes, list[SavedPort]]:
    """The endpoint table dump and our ports; ``StateFileError`` if anything is off."""
    try:
        raw = expect(unpack(blob), dict, "endpoints state file")
        table = expect(raw.get("table"), bytes, "endpoints table")
        rows = expect(raw.get("ports"), list, "endpoints ports")
        if len(rows) > MAX_SAVED_PORTS:
            raise ValueError(f"{len(rows)} ports saved, more than {MAX_SAVED_PORTS}")
        return table, [_port(row) for row in rows]
    except (ProtocolError, ValueError, TypeError) as exc:
        raise StateFileError(f"endpoints state is corrupt: {exc}") from None


def _port(row: object) -> SavedPort:
    fields = expect(row, list, "port")
    if len(fields) != 8:
        raise ValueError(f"a saved port has {len(fields)} fields, not 8")
    cid, netns, ifname, mac, ip, prefix, mtu, from_ipam = fields
    for value, what in ((cid, "container"), (netns, "netns"), (ifname, "ifname"),
                        (mac, "mac"), (ip, "ip")):
        expect(value, str, f"port {what}")
    if not isinstance(prefix, int) or isinstance(prefix, bool) or not 0 <= prefix <= 128:
        raise ValueError(f"port prefix {prefix!r} is not a prefix length")
    if mtu is not None and (not isinstance(mtu, int) or isinstance(mtu, bool)):
        raise ValueError(f"port mtu {mtu!r} is not a number")
    if not isinstance(from_ipam, bool):
        raise ValueError(f"port from_ipam {from_ipam!r} is not true or false")
    return SavedPort(cid, netns, ifname, mac, ip, prefix, mtu, from_ipam)

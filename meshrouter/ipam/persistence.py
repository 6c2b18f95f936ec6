"""Theory of operation: the IPAM state file (``ipam`` in the data directory).

It holds the ring, the allocations and the floors, as one msgpack map with a
format number.  ``load`` checks everything it reads (format, range, that the
ring covers the range, that every address is usable and given once) and
raises ``StateFileError`` with what to do: a router never resets its state
silently, since forgetting an allocation could hand the address out twice.
"""

from __future__ import annotations

from dataclasses import dataclass

from meshrouter.codec import expect, pack, unpack
from meshrouter.errors import IpamInvalidError, MeshError, StateFileError
from meshrouter.ipam.address_range import AddressRange
from meshrouter.ipam.ring import Ring

STATE_FORMAT = 1
MAX_CONTAINER_ID = 256


@dataclass(slots=True)
class SavedState:
    ring: Ring | None
    allocations: dict[str, list[int]]
    floors: dict[int, int]


def check_container(container: str) -> None:
    if not container or len(container) > MAX_CONTAINER_ID or not container.isprintable():
        raise IpamInvalidError(
            f"container ID must be 1..{MAX_CONTAINER_ID} printable characters")


def dump(address_range: AddressRange, ring: Ring | None, allocations: dict[str, list[int]],
         floors: dict[int, int]) -> bytes:
    return pack({
        "format": STATE_FORMAT,
        "range": str(address_range),
        "ring": ring.to_wire() if ring is not None else None,
        "allocations": {c: a for c, a in sorted(allocations.items())},
        "floor": [[t, f] for t, f in sorted(floors.items())],
    })


def load(blob: bytes, address_range: AddressRange) -> SavedState:
    """Read a ``dump``; raise StateFileError (never reset silently)."""
    try:
        value = expect(unpack(blob), dict, "ipam state file")
        if value.get("format") != STATE_FORMAT:
            raise StateFileError(
                f"IPAM state file has format {value.get('format')!r}; this version "
                f"reads format {STATE_FORMAT}"
            )
        if value.get("range") != str(address_range):
            raise StateFileError(
                f"IPAM state file was written for --ipalloc-range {value.get('range')}, "
                f"but the router runs with {address_range}; start with the same range, or "
                "`meshrouter reset` to leave the old cluster"
            )
        ring = Ring.from_wire(value["ring"]) if value.get("ring") is not None else None
        if ring is not None and (ring.start, ring.end) != (address_range.start,
                                                           address_range.end):
            raise StateFileError(
                f"IPAM state file is corrupt: its ring does not cover {address_range}"
            )
        allocations = expect(value.get("allocations", {}), dict, "allocations")
        floor = expect(value.get("floor", []), list, "floor")
        restored: dict[str, list[int]] = {}
        seen: set[int] = set()
        for container, addresses in allocations.items():
            check_container(expect(container, str, "container"))
            restored[container] = []
            for a in expect(addresses, list, "addresses"):
                address = expect(a, int, "address")
                if not address_range.usable(address) or address in seen:
                    raise StateFileError(
                        f"IPAM state file is corrupt: address {address} of {container} is "
                        "outside the range or given twice"
                    )
                seen.add(address)
                restored[container].append(address)
        floors = {expect(t, int, "token"): expect(f, int, "floor") for t, f in floor}
    except StateFileError:
        raise
    except (MeshError, KeyError, TypeError, ValueError) as exc:
        raise StateFileError(f"IPAM state file is corrupt: {exc}") from None
    return SavedState(ring, restored, floors)

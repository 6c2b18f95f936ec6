"""Theory of operation: anti-entropy digests of the DNS records.

Two neighbours compare their records in two steps, as the topology channel does
(see ``gossip/core.py``): first a *summary* -- a marker byte and the XOR of all
owners' 128-bit fingerprints (17 bytes) -- which settles the common case of
equal state at once; if summaries differ, the *full* digest lists, per owner,
(floor, highest version, fingerprint).  The answer to a full digest is every
record of each owner whose fingerprint differs from ours: one owner's records
are the containers of one host, few enough to resend whole, and resending them
whole repairs any gap (a missed middle version), not only a lagging tail.
"""

from __future__ import annotations

from typing import Any

from meshrouter.codec import expect, pack, unpack
from meshrouter.errors import MalformedMessageError
from meshrouter.names import PeerName, check_peer_name

from .records import MAX_VERSION, DnsRecords

SUMMARY_MARKER = b"S"
SUMMARY_LEN = 17
MAX_DIGEST = 4 * 1024 * 1024
MAX_DIGEST_OWNERS = 100_000

OwnerDigest = tuple[int, int, int]
"""(floor, max_version, fingerprint) of one owner."""


def summary(records: DnsRecords) -> bytes:
    value = 0
    for owner in records.owners:
        value ^= records.fingerprint(owner)
    return SUMMARY_MARKER + value.to_bytes(16, "big")


def is_summary(digest: bytes) -> bool:
    return len(digest) == SUMMARY_LEN and digest[:1] == SUMMARY_MARKER


def full(records: DnsRecords) -> bytes:
    return pack([
        [owner, held.floor, held.max_version, records.fingerprint(owner).to_bytes(16, "big")]
        for owner, held in sorted(records.owners.items())
    ])


def decode_full(digest: bytes) -> dict[PeerName, OwnerDigest]:
    """Untrusted full digest -> {owner: (floor, max, fingerprint)}; MalformedMessageError."""
    rows: list[Any] = expect(unpack(digest, max_size=MAX_DIGEST), list, "dns digest")
    if len(rows) > MAX_DIGEST_OWNERS:
        raise MalformedMessageError("dns digest lists too many owners")
    result: dict[PeerName, OwnerDigest] = {}
    for row in rows:
        fields: list[Any] = expect(row, list, "dns digest entry")
        if len(fields) != 4:
            raise MalformedMessageError("dns digest entry: expected 4 fields")
        owner = check_peer_name(fields[0])
        numbers = [expect(f, int, "dns digest number") for f in fields[1:3]]
        if not all(0 <= n <= MAX_VERSION for n in numbers):
            raise MalformedMessageError("dns digest version out of range")
        fp: bytes = expect(fields[3], bytes, "dns digest fingerprint")
        if len(fp) != 16:
            raise MalformedMessageError("dns digest fingerprint must be 16 bytes")
        result[owner] = (numbers[0], numbers[1], int.from_bytes(fp, "big"))
    return result


def newer_than(records: DnsRecords, digest: bytes) -> DnsRecords | None:
    """Every record of each owner whose fingerprint differs from the digest's."""
    if is_summary(digest):
        return None
    theirs = decode_full(digest)
    differing = {
        owner for owner in records.owners
        if owner not in theirs or theirs[owner][2] != records.fingerprint(owner)
    }
    return records.only(differing) if differing else None


def lacks_from(records: DnsRecords, digest: bytes) -> bool:
    """True if the digest shows an owner we lack or hold differently."""
    if is_summary(digest):
        return False
    for owner, (_floor, _top, fp) in decode_full(digest).items():
        if owner not in records.owners or records.fingerprint(owner) != fp:
            return True
    return False

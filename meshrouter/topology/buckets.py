"""Theory of operation: bucketed topology digests (protocol 4; 32-bit buckets since 5).

Two neighbours whose record sets differ used to swap *full* digests
(``{name: [version, uid]}``, ~21 bytes per peer) although they usually differ
in a handful of records: the ones whose broadcasts are still in flight.  In a
full mesh every new connection and every repair round during a join did that,
O(N) bytes each, O(N^2) per join -- a third of a join's bytes at N = 50.

Peer names are spread over ``2**bits`` *buckets* (a multiplicative hash of the
48-bit name, top bits).  A **bucket summary** carries the 128-bit fingerprint
of the whole record set and, per bucket, 32 bits of the XOR of its records'
fingerprints: equal totals end the exchange, as the 17-byte summary did.  Its
receiver compares bucket by bucket (at the sender's ``bits``) and answers with
a **partial digest**: the ``[version, uid]`` entries of the differing buckets
only, with a bitmap saying which buckets it covers.  A partial digest is then
answered like a full one, restricted to the buckets it covers: the records of
those buckets its owner lacks or holds older (deltas where it holds the base),
and, once, our partial digest of the same buckets if it shows something we
lack.  The exchange keeps its three digests; only their size changes, from
O(N) to O(differing records x N / 2**bits + 2**bits).

``bits`` is chosen by the summary's sender from its record count: about
4 x sqrt(N) buckets (a summary of 4 bytes per bucket against ~21 bytes per
entry of each differing bucket, for a few differing records), at most
``MAX_BUCKET_BITS``.  A total that differs while every bucket agrees (a 32-bit
collision) is answered with every bucket.

Why 32 bits per bucket (protocol 5; protocol 4 sent 64): summaries are most
of a full-mesh join's digest bytes (a repair round per router per second of
the join), and a bucket whose difference hides behind a 32-bit collision
(odds 2**-32 per differing bucket and exchange) is only left to the next
exchange: the 128-bit totals still differ, so the next round asks again, and
a round where no other bucket differs asks for every bucket.

Formats (the first byte tells them apart from a msgpack map, the full digest):

* bucket summary: ``0x02``, ``bits`` (one byte), 16 bytes of total
  fingerprint, ``2**bits`` x 4 bytes of bucket fingerprints;
* partial digest: ``0x03``, ``bits``, the covered-bucket bitmap
  (``ceil(2**bits / 8)`` bytes, bucket i is bit ``i % 8`` of byte ``i // 8``),
  then the msgpack digest map of the covered buckets' entries.

Pure functions of the records; ``Topology`` caches per version.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from meshrouter.errors import MalformedMessageError
from meshrouter.names import PeerName
from meshrouter.topology.peer_map import PeerMap, decode_digest, encode_digest
from meshrouter.topology.records import PeerRecord, record_fingerprint

BUCKET_SUMMARY_MARKER = 0x02
PARTIAL_DIGEST_MARKER = 0x03
MAX_BUCKET_BITS = 12
BUCKET_FINGERPRINT_BYTES = 4
BUCKET_FINGERPRINT_BITS = 8 * BUCKET_FINGERPRINT_BYTES
TOTAL_FINGERPRINT_BYTES = 16
_MULTIPLIER = 0x9E3779B97F4A7C15  # 2**64 / golden ratio: spreads sequential names
_MASK64 = (1 << 64) - 1
BUCKET_SHIFT = 128 - BUCKET_FINGERPRINT_BITS
"""A record's bucket share: the top bits of its 128-bit fingerprint."""


def bucket_bits(count: int) -> int:
    """Bucket bits for a record set of ``count`` records: about 4 x sqrt(N)
    buckets; one below 8 records (a full digest of a few entries is as small)."""
    if count < 8:
        return 0
    # floor(log2(4 * sqrt(N))) = floor((4 + log2 N) / 2), in integers.
    return min(MAX_BUCKET_BITS, (4 + count.bit_length() - 1) // 2)


def bucket_of(name: int, bits: int) -> int:
    """The bucket of a peer name among ``2**bits``."""
    if bits == 0:
        return 0
    return ((name * _MULTIPLIER) & _MASK64) >> (64 - bits)


def bucket_fingerprints(records: Iterable[PeerRecord], bits: int) -> list[int]:
    """Per bucket, the top 32 bits of the XOR of its records' fingerprints."""
    buckets = [0] * (1 << bits)
    for record in records:
        buckets[bucket_of(record.name, bits)] ^= record_fingerprint(record) >> BUCKET_SHIFT
    return buckets


def encode_bucket_summary(total: int, buckets: list[int]) -> bytes:
    bits = len(buckets).bit_length() - 1
    parts = [bytes((BUCKET_SUMMARY_MARKER, bits)), total.to_bytes(TOTAL_FINGERPRINT_BYTES, "big")]
    parts.extend(b.to_bytes(BUCKET_FINGERPRINT_BYTES, "big") for b in buckets)
    return b"".join(parts)


@dataclass(frozen=True, slots=True)
class BucketSummary:
    total: int
    buckets: tuple[int, ...]

    @property
    def bits(self) -> int:
        return len(self.buckets).bit_length() - 1


@dataclass(frozen=True, slots=True)
class PartialDigest:
    bits: int
    covered: frozenset[int]
    entries: dict[PeerName, tuple[int, int]]

    def covers(self, name: int) -> bool:
        return bucket_of(name, self.bits) in self.covered


def _bits_of(digest: bytes) -> int:
    if len(digest) < 2 or digest[1] > MAX_BUCKET_BITS:
        raise MalformedMessageError(
            f"bucketed topology digest without bucket bits 0..{MAX_BUCKET_BITS}")
    return digest[1]


def decode_bucket_summary(digest: bytes) -> BucketSummary:
    """Untrusted bytes (marker ``0x02``) -> summary; raises only MalformedMessageError."""
    bits = _bits_of(digest)
    head = 2 + TOTAL_FINGERPRINT_BYTES
    expected = head + (BUCKET_FINGERPRINT_BYTES << bits)
    if len(digest) != expected:
        raise MalformedMessageError(
            f"bucket summary of {len(digest)} bytes, expected {expected} for {1 << bits} buckets")
    total = int.from_bytes(digest[2:head], "big")
    size = BUCKET_FINGERPRINT_BYTES
    buckets = tuple(int.from_bytes(digest[at:at + size], "big")
                    for at in range(head, expected, size))
    return BucketSummary(total, buckets)


def encode_partial_digest(records: Mapping[PeerName, PeerRecord], bits: int,
                          covered: Iterable[int]) -> bytes:
    """Our partial digest: the entries of ``covered`` buckets, and which those are."""
    wanted = set(covered)
    bitmap = bytearray((1 << bits) // 8 if bits >= 3 else 1)
    for index in wanted:
        bitmap[index // 8] |= 1 << (index % 8)
    chosen = PeerMap({name: record for name, record in records.items()
                      if bucket_of(name, bits) in wanted})
    return bytes((PARTIAL_DIGEST_MARKER, bits)) + bytes(bitmap) + encode_digest(chosen)


def decode_partial_digest(digest: bytes) -> PartialDigest:
    """Untrusted bytes (marker ``0x03``) -> partial digest; raises only
    MalformedMessageError.  Every entry must lie in a covered bucket."""
    bits = _bits_of(digest)
    count = 1 << bits
    width = count // 8 if bits >= 3 else 1
    bitmap = digest[2:2 + width]
    if len(bitmap) != width:
        raise MalformedMessageError("partial topology digest cut short in its bucket bitmap")
    covered = frozenset(i for i in range(count) if bitmap[i // 8] >> (i % 8) & 1)
    if bits < 3 and bitmap[0] >> count:
        raise MalformedMessageError("partial topology digest covers a bucket beyond its count")
    entries = decode_digest(digest[2 + width:])
    for name in entries:
        if bucket_of(name, bits) not in covered:
            raise MalformedMessageError(
                f"partial topology digest lists {name:012x} outside the buckets it covers")
    return PartialDigest(bits, covered, entries)


def differing_buckets(ours: list[int], theirs: BucketSummary) -> list[int]:
    """Buckets where ours (``bucket_fingerprints`` of our records at the
    summary's bits) and the summary's owner's differ (all of them if only the
    totals differ: a 32-bit collision between buckets)."""
    differing = [i for i, (a, b) in enumerate(zip(ours, theirs.buckets, strict=True)) if a != b]
    return differing or list(range(len(ours)))

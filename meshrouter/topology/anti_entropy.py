"""Theory of operation: the topology channel's anti-entropy digests.

Two neighbours first compare a *summary*: the 128-bit fingerprint of their
record sets (``Topology.fingerprint``) and, since protocol 4, a fingerprint
per bucket of peer names (32 bits since protocol 5; see ``buckets``).  Equal
totals end the exchange; the common case on a stable mesh.  A different
summary is answered with a digest ``{name: [version, uid]}``
(``peer_map.encode_digest``) of the buckets that differ -- a *partial*
digest -- and a digest is answered with what its owner
lacks among the names it covers (``newer_than``): for a peer whose record it
holds at an older version of the same incarnation, the per-link delta from
that version when our record's change log reaches back that far (see
``deltas``); otherwise -- a peer it lacks, another incarnation, a log too short
-- the whole record.  Whole records thus go only where the receiver lacks the
base.

The protocol-3 forms are still understood (a 17-byte summary, marker
``0x01``, answered with a full digest; a full digest, a msgpack map, covering
every name), so the functions stay total over what the decoder accepts.

``DigestState`` holds one router's records (by reference) and caches its
summary and bucket fingerprints per topology version, and the last digest it
parsed: one received digest is read by up to four questions (what it lacks,
whether it differs, whether it shows something we lack, our answer), and is
decoded once.  The rest are pure functions.
"""

from __future__ import annotations

from collections.abc import Mapping

from meshrouter.errors import MalformedMessageError
from meshrouter.names import PeerName
from meshrouter.topology.asks import AsksInFlight
from meshrouter.topology.buckets import (
    BUCKET_SHIFT,
    BUCKET_SUMMARY_MARKER,
    PARTIAL_DIGEST_MARKER,
    BucketSummary,
    PartialDigest,
    bucket_bits,
    bucket_fingerprints,
    bucket_of,
    decode_bucket_summary,
    decode_partial_digest,
    differing_buckets,
    encode_bucket_summary,
    encode_partial_digest,
)
from meshrouter.topology.deltas import RecordDelta, make_delta
from meshrouter.topology.peer_map import PeerMap, decode_digest, encode_digest
from meshrouter.topology.records import PeerRecord, record_fingerprint

SUMMARY_DIGEST_MARKER = b"\x01"  # never the first byte of a msgpack map
SUMMARY_DIGEST_BYTES = 17

Parsed = BucketSummary | PartialDigest | dict[PeerName, tuple[int, int]] | int
"""A decoded digest: a bucket summary, a partial digest, a full digest (its
entries), or a protocol-3 summary (its total fingerprint)."""


def summary_digest(fingerprint: int) -> bytes:
    """The protocol-3 17-byte summary of a record set with this fingerprint."""
    return SUMMARY_DIGEST_MARKER + fingerprint.to_bytes(16, "big")


def parse(digest: bytes) -> Parsed:
    """Decode any topology digest; raises only ``MalformedMessageError``."""
    marker = digest[:1]
    if marker == SUMMARY_DIGEST_MARKER:
        if len(digest) != SUMMARY_DIGEST_BYTES:
            raise MalformedMessageError(
                f"summary digest of {len(digest)} bytes, expected {SUMMARY_DIGEST_BYTES}")
        return int.from_bytes(digest[1:], "big")
    if marker == bytes((BUCKET_SUMMARY_MARKER,)):
        return decode_bucket_summary(digest)
    if marker == bytes((PARTIAL_DIGEST_MARKER,)):
        return decode_partial_digest(digest)
    return decode_digest(digest)


def is_summary(digest: bytes) -> bool:
    """True for a summary (either form); a malformed digest raises."""
    return isinstance(parse(digest), BucketSummary | int)


def _entries(parsed: Parsed) -> tuple[dict[PeerName, tuple[int, int]], PartialDigest | None]:
    if isinstance(parsed, PartialDigest):
        return parsed.entries, parsed
    assert isinstance(parsed, dict)
    return parsed, None


def newer_than(records: Mapping[PeerName, PeerRecord], parsed: Parsed) -> PeerMap | None:
    """What the (parsed) digest's owner lacks or holds at a lower (version,
    uid), among the names it covers: a per-link delta from the version it holds
    where the record's log reaches back that far, else the whole record.  None
    for a summary (it says only whether we differ) or when it lacks nothing."""
    if isinstance(parsed, BucketSummary | int):
        return None
    theirs, partial = _entries(parsed)
    whole: dict[PeerName, PeerRecord] = {}
    deltas: list[RecordDelta] = []
    for name, record in records.items():
        held = theirs.get(name)
        if held is not None:
            if (record.version, record.uid) <= held:
                continue
            if held[1] == record.uid:
                delta = make_delta(record, held[0])
                if delta is not None:
                    deltas.append(delta)
                    continue
        elif partial is not None and not partial.covers(name):
            continue
        whole[name] = record
    if not whole and not deltas:
        return None
    return PeerMap.of_deltas(*deltas, records=whole)


def lacks_from(records: Mapping[PeerName, PeerRecord], parsed: Parsed) -> bool:
    """True if a (parsed, full or partial) digest shows a record we lack or
    hold at a lower (version, uid)."""
    if isinstance(parsed, BucketSummary | int):
        return False
    return PeerMap(records).lacks_from(_entries(parsed)[0])


MAX_BUCKET_LAYOUTS = 3
"""Bucket counts whose fingerprints are kept current (ours, and a neighbour's
summary at a count one step away while the mesh grows)."""


class DigestState:
    """One router's digests: its summary cached per topology version, bucket
    fingerprints kept current record by record, and the last digest it parsed.

    Bucket fingerprints are XORs, so a record written changes one bucket by
    the XOR of its old and new fingerprints (``written``): a summary costs
    O(buckets), not a pass over every record per topology version (at 1,000
    peers that pass, per digest sent or answered, was ~5 % of a simulated
    join)."""

    __slots__ = ("_buckets", "_full", "_full_version", "_parsed",
                 "_parsed_bytes", "_records", "_summary", "_summary_version", "asks")

    def __init__(self, records: Mapping[PeerName, PeerRecord]) -> None:
        """``records`` is the topology's own dict, read at each call."""
        self._records = records
        self.asks = AsksInFlight()
        self._summary = b""
        self._summary_version = -1
        self._full = b""
        self._full_version = -1
        self._buckets: dict[int, list[int]] = {}  # bits -> current fingerprints
        self._parsed_bytes: bytes | None = None
        self._parsed: Parsed = 0

    def parse(self, digest: bytes) -> Parsed:
        """``parse(digest)``, decoded once for the digest last asked about.

        Keyed by the bytes object itself (held here, so no other object can
        take its identity): the gossip core hands the same ``msg.digest`` to
        every question it asks about one message.  Malformed bytes raise each
        time and are never cached."""
        if digest is not self._parsed_bytes:
            self._parsed = parse(digest)
            self._parsed_bytes = digest
        return self._parsed

    def written(self, name: PeerName, previous: PeerRecord | None,
                record: PeerRecord | None) -> None:
        """The record held for ``name`` went from ``previous`` to ``record``
        (None: none held); ``Topology`` calls this for every write and drop."""
        if not self._buckets:
            return
        change = 0
        if previous is not None:
            change = record_fingerprint(previous) >> BUCKET_SHIFT
        if record is not None:
            change ^= record_fingerprint(record) >> BUCKET_SHIFT
        if change:
            for bits, buckets in self._buckets.items():
                buckets[bucket_of(name, bits)] ^= change

    def bucket_fingerprints(self, bits: int) -> list[int]:
        """Our records' bucket fingerprints at ``bits`` now (a copy; they are
        kept current by ``written``)."""
        buckets = self._buckets.get(bits)
        if buckets is None:
            if len(self._buckets) >= MAX_BUCKET_LAYOUTS:
                del self._buckets[next(iter(self._buckets))]  # the oldest layout
            buckets = self._buckets[bits] = bucket_fingerprints(self._records.values(), bits)
        return list(buckets)

    def summary(self, fingerprint: int, version: int) -> bytes:
        """Our bucket summary (bits from our record count)."""
        if self._summary_version != version:
            buckets = self.bucket_fingerprints(bucket_bits(len(self._records)))
            self._summary = encode_bucket_summary(fingerprint, buckets)
            self._summary_version = version
        return self._summary

    def full(self, version: int) -> bytes:
        """msgpack ``{name: [version, uid]}`` of all records."""
        if self._full_version != version:
            self._full = encode_digest(PeerMap(self._records))
            self._full_version = version
        return self._full

    def differs(self, fingerprint: int, digest: bytes) -> bool:
        """A summary (either form) whose total differs from ours."""
        parsed = self.parse(digest)
        if isinstance(parsed, int):
            return parsed != fingerprint
        return isinstance(parsed, BucketSummary) and parsed.total != fingerprint

    def answer(self, version: int, received: bytes, neighbour: PeerName | None) -> bytes:
        """The digest to send in answer to ``neighbour``'s ``received``: the
        buckets a bucket summary shows differing (less those another neighbour
        is already answering with the same contents, see ``asks``) and always
        the bucket of ``neighbour``'s own record, the same buckets as a partial
        digest, else (protocol-3 forms) the full digest.

        Why its own bucket: a new connection's summary leaves before the
        connection is confirmed, so it shows the sender's record without the
        new link; the answer to our ask must bring that record (its other
        half of the link), since our ask is why we do not answer its digest
        with ours (``gossip/digest_exchange``), and its next broadcast may be a
        batch window away."""
        parsed = self.parse(received)
        if isinstance(parsed, BucketSummary):
            differing = differing_buckets(self.bucket_fingerprints(parsed.bits), parsed)
            own = None if neighbour is None else bucket_of(neighbour, parsed.bits)
            wanted = self.asks.pick(neighbour, parsed.bits, differing, parsed.buckets, keep=own)
            return encode_partial_digest(self._records, parsed.bits, wanted)
        if isinstance(parsed, PartialDigest):
            return encode_partial_digest(self._records, parsed.bits, parsed.covered)
        return self.full(version)

"""Theory of operation: the topology channel's anti-entropy digests.

Two neighbours first compare a *summary*: a marker byte and the 128-bit
fingerprint of their record sets (``Topology.fingerprint``), 17 bytes.  Equal
summaries end the exchange; the common case on a new connection and in every
periodic round.  A different summary is answered with the *full* digest
``{name: [version, uid]}`` (``peer_map.encode_digest``), and a full digest is
answered with what its owner lacks (``newer_than``): for a peer whose record it
holds at an older version of the same incarnation, the per-link delta from that
version when our record's change log reaches back that far (see ``deltas``);
otherwise -- a peer it lacks, another incarnation, a log too short -- the whole
record.  Whole records thus go only where the receiver lacks the base.

Pure functions of the records; ``Topology`` holds the state and caches.
"""

from __future__ import annotations

from collections.abc import Mapping

from meshrouter.errors import MalformedMessageError
from meshrouter.names import PeerName
from meshrouter.topology.deltas import RecordDelta, make_delta
from meshrouter.topology.peer_map import PeerMap, decode_digest
from meshrouter.topology.records import PeerRecord

SUMMARY_DIGEST_MARKER = b"\x01"  # never the first byte of a msgpack map
SUMMARY_DIGEST_BYTES = 17


def summary_digest(fingerprint: int) -> bytes:
    """The 17-byte summary of a record set with this fingerprint."""
    return SUMMARY_DIGEST_MARKER + fingerprint.to_bytes(16, "big")


def is_summary(digest: bytes) -> bool:
    """True for a summary digest; a malformed one raises ``MalformedMessageError``."""
    if digest[:1] != SUMMARY_DIGEST_MARKER:
        return False
    if len(digest) != SUMMARY_DIGEST_BYTES:
        raise MalformedMessageError(
            f"summary digest of {len(digest)} bytes, expected {SUMMARY_DIGEST_BYTES}")
    return True


def newer_than(records: Mapping[PeerName, PeerRecord], digest: bytes) -> PeerMap | None:
    """What the digest's owner lacks or holds at a lower (version, uid): a per-link
    delta from the version it holds where the record's log reaches back that
    far, else the whole record.  None for a summary (it says only whether we
    differ) or when it lacks nothing."""
    if is_summary(digest):
        return None
    theirs = decode_digest(digest)
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
        whole[name] = record
    if not whole and not deltas:
        return None
    return PeerMap.of_deltas(*deltas, records=whole)


def lacks_from(records: Mapping[PeerName, PeerRecord], digest: bytes) -> bool:
    """True if a full digest shows a record we lack or hold at a lower (version, uid)."""
    if is_summary(digest):
        return False
    return PeerMap(records).lacks_from(decode_digest(digest))

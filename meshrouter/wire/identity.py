"""Theory of operation: who is at the other end of a connection.

During the handshake each router sends one ``Identity``: its 48-bit peer name,
a nickname for humans, a UID drawn at process start (so a restart, or a second
router wrongly sharing the name, is detectable), a connection ID drawn per
connection, its 12-bit short ID and the cluster ID it belongs to ('' while it has
not joined any cluster).

``connection_uid`` XORs both connection IDs, so both ends compute the same number
for the same TCP connection without another round trip; when two connections link
the same pair of routers, both ends keep the one with the lower number (Weave's
tie-break).

On the wire an identity is a msgpack map with short keys.  Unknown keys are
ignored so a later protocol version can add fields; every known field is
required and validated (type, range, length), because the values end up in logs,
status tables and topology records.  Text fields must be printable so a hostile
peer cannot put terminal escapes into ``meshrouter status``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from meshrouter.codec import pack, unpack
from meshrouter.errors import ConfigError, MalformedMessageError
from meshrouter.names import PEER_NAME_MAX, SHORT_ID_COUNT, PeerName, format_peer_name

MAX_NICKNAME_LEN = 255
MAX_CLUSTER_ID_LEN = 64
U64_MAX = (1 << 64) - 1

# Short wire keys: the identity frame is sent on every connection attempt.
KEY_NAME = "n"
KEY_NICKNAME = "nn"
KEY_UID = "u"
KEY_CONN_ID = "c"
KEY_SHORT_ID = "s"
KEY_CLUSTER_ID = "cl"


def _int_problem(value: object, what: str, maximum: int) -> str | None:
    if not isinstance(value, int) or isinstance(value, bool):
        return f"{what} must be an integer, got {type(value).__name__}"
    if not 0 <= value <= maximum:
        return f"{what} {value} is outside 0..{maximum}"
    return None


def _text_problem(value: object, what: str, max_len: int) -> str | None:
    if not isinstance(value, str):
        return f"{what} must be a string, got {type(value).__name__}"
    if len(value) > max_len:
        return f"{what} is {len(value)} characters long, the limit is {max_len}"
    if not value.isprintable():
        return f"{what} {value!r} contains non-printable characters"
    return None


def _fields_problem(
    name: object,
    nickname: object,
    uid: object,
    conn_id: object,
    short_id: object,
    cluster_id: object,
) -> str | None:
    """Return why these identity fields are invalid, or None if they are valid.

    Shared by local construction (ConfigError) and decoding of a remote's
    identity (MalformedMessageError), so both apply exactly the same rules.
    """
    checks = (
        _int_problem(name, "peer name", PEER_NAME_MAX),
        _text_problem(nickname, "nickname", MAX_NICKNAME_LEN),
        _int_problem(uid, "UID", U64_MAX),
        _int_problem(conn_id, "connection ID", U64_MAX),
        _int_problem(short_id, "short ID", SHORT_ID_COUNT - 1),
        _text_problem(cluster_id, "cluster ID", MAX_CLUSTER_ID_LEN),
    )
    for problem in checks:
        if problem is not None:
            return problem
    return None


@dataclass(frozen=True, slots=True)
class Identity:
    """What a router tells its peer about itself at the start of a connection."""

    name: PeerName
    nickname: str
    uid: int
    conn_id: int
    short_id: int
    cluster_id: str

    def __post_init__(self) -> None:
        problem = _fields_problem(
            self.name, self.nickname, self.uid, self.conn_id, self.short_id, self.cluster_id
        )
        if problem is not None:
            raise ConfigError(f"invalid local identity: {problem}")

    def describe(self) -> str:
        """Human label for errors and logs: ``nickname (aa:bb:cc:dd:ee:ff)``."""
        return f"{self.nickname or '?'} ({format_peer_name(self.name)})"


def connection_uid(local: Identity, remote: Identity) -> int:
    """The same number at both ends of one connection (for duplicate tie-breaks)."""
    return local.conn_id ^ remote.conn_id


def encode_identity(identity: Identity) -> bytes:
    """Encode an identity as the handshake's msgpack map."""
    return pack(
        {
            KEY_NAME: identity.name,
            KEY_NICKNAME: identity.nickname,
            KEY_UID: identity.uid,
            KEY_CONN_ID: identity.conn_id,
            KEY_SHORT_ID: identity.short_id,
            KEY_CLUSTER_ID: identity.cluster_id,
        }
    )


def decode_identity(body: bytes, *, max_size: int) -> Identity:
    """Decode and validate a remote identity; raises only MalformedMessageError."""
    fields: Any = unpack(body, max_size=max_size)
    if not isinstance(fields, dict):
        raise MalformedMessageError(
            f"handshake identity is not a map (got {type(fields).__name__})"
        )
    keys = (KEY_NAME, KEY_NICKNAME, KEY_UID, KEY_CONN_ID, KEY_SHORT_ID, KEY_CLUSTER_ID)
    missing = [key for key in keys if key not in fields]
    if missing:
        raise MalformedMessageError(f"handshake identity lacks the field(s) {missing}")
    values = [fields[key] for key in keys]
    problem = _fields_problem(*values)
    if problem is not None:
        raise MalformedMessageError(f"invalid remote identity: {problem}")
    name, nickname, uid, conn_id, short_id, cluster_id = values
    return Identity(PeerName(name), nickname, uid, conn_id, short_id, cluster_id)

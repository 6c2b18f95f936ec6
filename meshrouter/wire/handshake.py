"""Theory of operation: the connection handshake, as a byte-in/byte-out state machine.

Both ends speak at once, as in Weave, so the handshake costs one round trip:

1. ``start()`` returns our header: ``MAGIC``, u8 min version, u8 max version,
   u8 encryption flag (1 iff we have a password) and, when the flag is 1, our
   32-byte CPace key share ``Y = X25519(y, g(password))`` for this connection
   (``pake.py``).
2. When the remote's header is complete we check the magic (is this a meshrouter
   peer at all?), pick ``min(maxes)`` as the version provided it is at least
   ``max(mins)``, check that both sides agree on encryption, finish CPace (the
   two fixed headers are its associated data, so a rewritten version range
   gives the two ends different keys), derive the session cipher, and return
   our identity frame: a length-prefixed frame (sealed when encrypted) holding
   our ``Identity``.  A wrong password shows up as the first sealed frame failing
   to open; the password never crosses the wire, and since the keys come out of
   a PAKE, the sealed frame lets a party without the password test exactly one
   guess -- the one it made live on this connection -- never more offline.
3. When the remote's identity frame is complete we open it, validate it, and
   refuse connections to ourselves, peer-name collisions and other clusters.
   Then the handshake is done and ``result`` holds the negotiated version, the
   remote identity, the ``Session`` for the rest of the connection (it continues
   the same cipher, so nonces stay in step) and any bytes that arrived after the
   identity frame.

Protocol version 2 is the CPace handshake; version 1 (a hash of the password
in the key derivation, open to offline guessing) is no longer spoken, and a
router of that release is refused with a version-mismatch error on both sides.

Every check is symmetric: both ends see both headers and both identities, so
both refuse with the same error class and each can tell its user why.  To keep
that true when a check fails in the same call that produced our identity frame,
the bytes that call would have returned stay available in ``unsent``; a shell
should send them (best effort) before closing.

Memory is bounded: before completion we hold at most one header plus one
identity frame (``MAX_IDENTITY_FRAME``, 4 KiB); a larger announced frame is
refused at once.  The handshake stays failed after an error, and re-raises it.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum, auto

from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from meshrouter.errors import (
    ClusterMismatchError,
    ConfigError,
    ConnectionToSelfError,
    DecryptionError,
    FrameTooLargeError,
    MalformedMessageError,
    MeshError,
    NameCollisionError,
    PasswordMismatchError,
    ProtocolError,
    VersionMismatchError,
    WrongPasswordError,
)
from meshrouter.names import format_peer_name
from meshrouter.wire.crypto import TAG_SIZE, SessionCipher, derive_session_cipher
from meshrouter.wire.framing import (
    DEFAULT_MAX_FRAME,
    FRAME_HEADER_SIZE,
    check_max_frame,
    encode_frame,
)
from meshrouter.wire.identity import Identity, decode_identity, encode_identity
from meshrouter.wire.pake import (
    SHARE_SIZE,
    calculate_generator,
    intermediate_session_key,
    public_share,
)
from meshrouter.wire.session import Session

# Protocol 3 adds per-link topology deltas (ten-field items that a version-2
# router refuses as malformed); protocol 4 adds bucketed topology digests
# (first bytes 0x02/0x03, malformed to a version-3 router); protocol 5 halves
# their bucket fingerprints to 32 bits (a version-4 router reads a version-5
# summary as the wrong length); protocol 6 lets a broadcast carry its tree (a
# fifth field, which a version-5 router refuses as malformed).  Older routers
# are refused at the handshake on both sides with a version message instead: a
# mixed mesh would need a digest format per neighbour, and forwarders that
# follow a plan beside forwarders that compute their own trees, for the length
# of a rolling upgrade.
PROTOCOL_MIN_VERSION = 6
PROTOCOL_MAX_VERSION = 6
MAGIC = b"meshrtr"
WEAVE_MAGIC = b"weave"
FLAG_PLAINTEXT = 0
FLAG_ENCRYPTED = 1
FIXED_HEADER_SIZE = len(MAGIC) + 3
MAX_IDENTITY_FRAME = 4096
MAX_VERSION_NUMBER = 255


@dataclass(frozen=True)
class HandshakeConfig:
    """Everything one end needs to run one connection's handshake.

    The version range defaults to what this code implements.  Any range within
    1..255 is accepted so that tests can play routers of other releases; the
    frames this module produces are the version-2 format whatever is negotiated.
    """

    identity: Identity
    password: bytes | None = None
    private_key: X25519PrivateKey | None = None
    min_version: int = PROTOCOL_MIN_VERSION
    max_version: int = PROTOCOL_MAX_VERSION
    max_frame: int = DEFAULT_MAX_FRAME

    def __post_init__(self) -> None:
        if self.password is not None:
            if not isinstance(self.password, bytes) or not self.password:
                raise ConfigError(
                    "the password must be non-empty bytes; to run without encryption "
                    "set no password at all"
                )
            if self.private_key is None:
                raise ConfigError(
                    "a password (encryption) needs a fresh X25519 private key (the CPace "
                    "scalar) per connection"
                )
        elif self.private_key is not None:
            raise ConfigError(
                "an X25519 private key was given without a password; it would never be "
                "used (encryption is on exactly when a password is set)"
            )
        for value in (self.min_version, self.max_version):
            if isinstance(value, bool) or not isinstance(value, int):
                raise ConfigError(f"protocol version {value!r} is not an integer")
        if not 1 <= self.min_version <= self.max_version <= MAX_VERSION_NUMBER:
            raise ConfigError(
                f"protocol version range {self.min_version}..{self.max_version} must satisfy "
                f"1 <= min <= max <= {MAX_VERSION_NUMBER}"
            )
        check_max_frame(self.max_frame)


@dataclass(frozen=True)
class HandshakeResult:
    """What a completed handshake established."""

    version: int
    remote: Identity
    session: Session
    leftover: bytes


class _State(Enum):
    NEW = auto()
    HEADER = auto()
    FRAME_LENGTH = auto()
    FRAME_BODY = auto()
    DONE = auto()


class Handshake:
    """One end of one connection's handshake; feed it bytes, send what it returns."""

    def __init__(self, config: HandshakeConfig) -> None:
        self._config = config
        self._share: bytes | None = None
        self._our_fixed_header = b""
        if config.private_key is not None:
            assert config.password is not None  # HandshakeConfig guarantees it
            self._share = public_share(config.private_key, calculate_generator(config.password))
        self._state = _State.NEW
        self._buffer = bytearray()
        self._version: int | None = None
        self._remote_encrypted = False
        self._cipher: SessionCipher | None = None
        self._session: Session | None = None
        self._frame_length = 0
        self._remote: Identity | None = None
        self._leftover = bytearray()
        self._error: ProtocolError | None = None
        self._unsent = b""

    # -- public surface -------------------------------------------------------

    @property
    def done(self) -> bool:
        return self._state is _State.DONE

    @property
    def result(self) -> HandshakeResult:
        """The outcome; ``leftover`` is every byte fed after the remote identity frame."""
        if self._state is not _State.DONE:
            raise MeshError("the handshake is not done yet; check .done before .result")
        assert self._version is not None
        assert self._remote is not None
        assert self._session is not None
        return HandshakeResult(self._version, self._remote, self._session, bytes(self._leftover))

    @property
    def buffered(self) -> int:
        """Bytes of an incomplete header or identity frame held (bounded, see above)."""
        return len(self._buffer)

    @property
    def unsent(self) -> bytes:
        """Bytes the failing ``receive_data`` call would have returned (send, then close)."""
        return self._unsent

    def start(self) -> bytes:
        """Our header; send it immediately, without waiting for the remote's."""
        if self._state is not _State.NEW:
            raise MeshError("Handshake.start() was already called")
        self._state = _State.HEADER
        config = self._config
        flag = FLAG_PLAINTEXT if self._share is None else FLAG_ENCRYPTED
        header = MAGIC + bytes([config.min_version, config.max_version, flag])
        self._our_fixed_header = header
        if self._share is not None:
            header += self._share
        return header

    def receive_data(self, data: bytes) -> bytes:
        """Consume received bytes; return bytes to send now (possibly b'')."""
        if self._error is not None:
            raise self._error
        if self._state is _State.NEW:
            raise MeshError("Handshake.start() must be called before receive_data()")
        if self._state is _State.DONE:
            self._leftover += data
            return b""
        out = bytearray()
        view = memoryview(data)
        try:
            consumed = self._consume(view, out)
        except ProtocolError as exc:
            self._error = exc
            self._unsent = bytes(out)
            raise
        if self.done:  # (not self._state: mypy would keep the narrowing from above)
            self._leftover += view[consumed:]
        return bytes(out)

    # -- state machine --------------------------------------------------------

    def _fill(self, view: memoryview, pos: int, target: int) -> int:
        """Copy bytes from ``view`` until the buffer holds ``target`` bytes."""
        take = max(0, min(target - len(self._buffer), len(view) - pos))
        self._buffer += view[pos : pos + take]
        return pos + take

    def _consume(self, view: memoryview, out: bytearray) -> int:
        """Advance as far as ``view`` allows; return how many bytes were used."""
        pos = 0
        if self._state is _State.HEADER:
            pos = self._fill(view, pos, FIXED_HEADER_SIZE)
            if self._version is None:
                if len(self._buffer) >= len(MAGIC):
                    self._check_magic(bytes(self._buffer[: len(MAGIC)]))
                if len(self._buffer) < FIXED_HEADER_SIZE:
                    return pos
                self._check_fixed_header()
            if self._remote_encrypted:
                pos = self._fill(view, pos, FIXED_HEADER_SIZE + SHARE_SIZE)
                if len(self._buffer) < FIXED_HEADER_SIZE + SHARE_SIZE:
                    return pos
                self._cipher = self._derive_cipher(bytes(self._buffer))
            self._session = Session(self._cipher, self._config.max_frame)
            out += self._identity_frame()
            self._buffer.clear()
            self._state = _State.FRAME_LENGTH
        if self._state is _State.FRAME_LENGTH:
            pos = self._fill(view, pos, FRAME_HEADER_SIZE)
            if len(self._buffer) < FRAME_HEADER_SIZE:
                return pos
            self._frame_length = int.from_bytes(self._buffer, "big")
            self._check_frame_length()
            self._buffer.clear()
            self._state = _State.FRAME_BODY
        if self._state is _State.FRAME_BODY:
            pos = self._fill(view, pos, self._frame_length)
            if len(self._buffer) < self._frame_length:
                return pos
            self._remote = self._accept_identity(bytes(self._buffer))
            self._buffer.clear()
            self._state = _State.DONE
        return pos

    def _check_magic(self, magic: bytes) -> None:
        if magic == MAGIC:
            return
        if magic.startswith(WEAVE_MAGIC):
            raise MalformedMessageError(
                "not a meshrouter peer: the remote is a Weave Net router (it sent the "
                "Weave handshake); meshrouter cannot peer with Weave Net"
            )
        raise MalformedMessageError(
            f"not a meshrouter peer: it sent {magic!r} where the meshrouter handshake "
            f"{MAGIC!r} was expected (is the target address the right port?)"
        )

    def _check_fixed_header(self) -> None:
        remote_min, remote_max, flag = self._buffer[len(MAGIC) : FIXED_HEADER_SIZE]
        if remote_min > remote_max:
            raise MalformedMessageError(
                f"the remote announced an empty protocol version range "
                f"{remote_min}..{remote_max}"
            )
        config = self._config
        version = min(config.max_version, remote_max)
        if version < max(config.min_version, remote_min):
            if remote_max < config.min_version:
                advice = "the remote router is too old for this one: upgrade the remote router"
            else:
                advice = "this router is too old for the remote one: upgrade this router"
            raise VersionMismatchError(
                f"no common protocol version: we speak versions "
                f"{config.min_version}..{config.max_version}, the remote speaks "
                f"{remote_min}..{remote_max}; {advice}"
            )
        if flag not in (FLAG_PLAINTEXT, FLAG_ENCRYPTED):
            raise MalformedMessageError(
                f"the remote's encryption flag is {flag}, expected {FLAG_PLAINTEXT} or "
                f"{FLAG_ENCRYPTED}"
            )
        remote_encrypted = flag == FLAG_ENCRYPTED
        local_encrypted = self._share is not None
        if local_encrypted and not remote_encrypted:
            raise PasswordMismatchError(
                "we have a password (encryption on) but the remote router has none "
                "(encryption off); set the same password on both routers, or remove "
                "it from this one"
            )
        if remote_encrypted and not local_encrypted:
            raise PasswordMismatchError(
                "the remote router has a password (encryption on) but we have none "
                "(encryption off); set the same password on this router, or remove it "
                "from the remote one"
            )
        self._version = version
        self._remote_encrypted = remote_encrypted

    def _derive_cipher(self, remote_header: bytes) -> SessionCipher:
        """Finish CPace; each end's fixed header is its associated data."""
        assert self._config.private_key is not None and self._share is not None
        remote_share = remote_header[FIXED_HEADER_SIZE:]
        isk = intermediate_session_key(
            self._config.private_key,
            self._share,
            self._our_fixed_header,
            remote_share,
            remote_header[:FIXED_HEADER_SIZE],
        )
        return derive_session_cipher(isk, self._share, remote_share)

    def _identity_frame(self) -> bytes:
        body = encode_identity(self._config.identity)
        if self._cipher is not None:
            body = self._cipher.seal(body)
        return encode_frame(body, MAX_IDENTITY_FRAME)

    def _check_frame_length(self) -> None:
        length = self._frame_length
        if length > MAX_IDENTITY_FRAME:
            raise FrameTooLargeError(
                f"the remote's handshake identity frame announces {length} bytes; "
                f"an identity frame is at most {MAX_IDENTITY_FRAME} bytes"
            )
        if self._cipher is not None and length < TAG_SIZE:
            raise MalformedMessageError(
                f"the remote's encrypted identity frame has {length} bytes, fewer than "
                f"the {TAG_SIZE}-byte authentication tag"
            )

    def _accept_identity(self, body: bytes) -> Identity:
        if self._cipher is not None:
            try:
                body = self._cipher.open(body)
            except DecryptionError:
                raise WrongPasswordError(
                    "the peer's password differs from ours: its first encrypted frame "
                    "failed to authenticate; set the same password on both routers"
                ) from None
        remote = decode_identity(body, max_size=MAX_IDENTITY_FRAME)
        local = self._config.identity
        if remote.name == local.name:
            if remote.uid == local.uid:
                raise ConnectionToSelfError(
                    f"connected to ourselves ({local.describe()}, UID {local.uid:#x}): "
                    "this target address leads back to this router; remove it from "
                    "the peer list (retried slowly meanwhile)"
                )
            raise NameCollisionError(
                f"the remote router {remote.describe()} uses our peer name "
                f"{format_peer_name(local.name)} with a different UID "
                f"({remote.uid:#x}, ours is {local.uid:#x}): two running routers share "
                "one peer name (cloned machine ID or copied data directory?); give "
                "one of them a different peer name (retried with backoff meanwhile)"
            )
        if local.cluster_id and remote.cluster_id and local.cluster_id != remote.cluster_id:
            raise ClusterMismatchError(
                f"the remote router {remote.describe()} belongs to cluster "
                f"{remote.cluster_id!r} but we belong to cluster {local.cluster_id!r}; "
                "routers of different clusters never peer. To move a router into the "
                "other cluster, stop it, reset its data directory (its IPAM and DNS "
                "state) and start it again; otherwise remove this target"
            )
        return remote

"""Theory of operation: the encrypted session between two routers.

When a password is set, each connection uses a fresh X25519 key pair (generated
by the caller, so this module stays deterministic and testable).  Both ends
compute the X25519 shared secret and feed it to HKDF-SHA256:

- ``salt = SHA256(b"meshrouter password v1" + password)``: without the password
  the derived keys are unrelated, so the first sealed frame fails to open
  (that is how a wrong password is detected; the password never crosses the wire);
- ``info = b"meshrouter session v1" + lower_public + higher_public +
  SHA256(transcript)``: binds the keys to this connection's two public keys, in an
  order both ends agree on, and to both handshake headers (so a rewritten version
  range in transit yields different keys at the two ends);
- 64 bytes of output: the side whose public key sorts lower sends with bytes
  0..31 and receives with bytes 32..63, the other side the reverse, so the two
  directions never share a key (a frame cannot be reflected back to its sender).

Frames are sealed with ChaCha20-Poly1305.  The nonce is 4 zero bytes plus an
8-byte big-endian counter; the sender counts frames sent, and the receiver
counts frames opened and uses its own count as the expected nonce (the nonce is
never transmitted).  A replayed, reordered, dropped, truncated or tampered frame
therefore fails authentication.  A counter never wraps: when it is exhausted
the session refuses to go on, and a new connection brings new keys.
"""

from __future__ import annotations

import hashlib

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from meshrouter.errors import DecryptionError, MalformedMessageError, ProtocolError

PUBLIC_KEY_SIZE = 32
KEY_SIZE = 32
TAG_SIZE = 16
NONCE_PREFIX = bytes(4)
COUNTER_LIMIT = 1 << 64  # counters run 0 .. COUNTER_LIMIT - 1, never wrap

PASSWORD_SALT_LABEL = b"meshrouter password v1"
SESSION_INFO_LABEL = b"meshrouter session v1"


def public_key_bytes(private_key: X25519PrivateKey) -> bytes:
    """The 32 raw bytes of the public key that goes into the handshake header."""
    return private_key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)


def _nonce(counter: int) -> bytes:
    return NONCE_PREFIX + counter.to_bytes(8, "big")


class SessionCipher:
    """Seals frames in one direction and opens them in the other, in order."""

    def __init__(self, send_key: bytes, receive_key: bytes) -> None:
        self._send = ChaCha20Poly1305(send_key)
        self._receive = ChaCha20Poly1305(receive_key)
        self._send_counter = 0
        self._receive_counter = 0

    def seal(self, plaintext: bytes) -> bytes:
        """Encrypt and authenticate the next outgoing frame body (+16 bytes)."""
        if self._send_counter >= COUNTER_LIMIT:
            raise ProtocolError(
                "the encrypted session has sent 2^64 frames and cannot send more "
                "without reusing a nonce; reconnect to get fresh keys"
            )
        sealed = self._send.encrypt(_nonce(self._send_counter), plaintext, None)
        self._send_counter += 1
        return sealed

    def open(self, sealed: bytes) -> bytes:
        """Authenticate and decrypt the next incoming frame body, in order."""
        if self._receive_counter >= COUNTER_LIMIT:
            raise DecryptionError(
                "the encrypted session has received 2^64 frames and cannot accept more; "
                "reconnect to get fresh keys"
            )
        if len(sealed) < TAG_SIZE:
            raise DecryptionError(
                f"sealed frame of {len(sealed)} bytes is shorter than the "
                f"{TAG_SIZE}-byte authentication tag"
            )
        try:
            plaintext = self._receive.decrypt(_nonce(self._receive_counter), sealed, None)
        except InvalidTag:
            raise DecryptionError(
                f"encrypted frame #{self._receive_counter} failed authentication "
                "(tampered, replayed, reordered or truncated)"
            ) from None
        self._receive_counter += 1
        return plaintext


def derive_session_cipher(
    private_key: X25519PrivateKey, remote_public: bytes, password: bytes, transcript: bytes = b""
) -> SessionCipher:
    """Derive this end's SessionCipher from our key pair, theirs and the password.

    ``transcript`` (both handshake headers, in a canonical order) is hashed into
    the HKDF info, so a man in the middle who rewrites a header -- to force a
    lower protocol version, say -- leaves the two ends with different keys.
    """
    if not isinstance(remote_public, bytes) or len(remote_public) != PUBLIC_KEY_SIZE:
        raise MalformedMessageError(
            f"the remote's X25519 public key must be {PUBLIC_KEY_SIZE} bytes"
        )
    local_public = public_key_bytes(private_key)
    if remote_public == local_public:
        raise MalformedMessageError(
            "the remote sent our own X25519 public key back (the connection is "
            "reflected to us, or something in between echoes our bytes)"
        )
    try:
        shared = private_key.exchange(X25519PublicKey.from_public_bytes(remote_public))
    except ValueError:
        # cryptography refuses low-order points (an all-zero shared secret).
        raise MalformedMessageError(
            "the remote's X25519 public key is a low-order point (no shared secret)"
        ) from None
    lower, higher = sorted((local_public, remote_public))
    keys = HKDF(
        algorithm=hashes.SHA256(),
        length=2 * KEY_SIZE,
        salt=hashlib.sha256(PASSWORD_SALT_LABEL + password).digest(),
        info=SESSION_INFO_LABEL + lower + higher + hashlib.sha256(transcript).digest(),
    ).derive(shared)
    first, second = keys[:KEY_SIZE], keys[KEY_SIZE:]
    if local_public == lower:
        return SessionCipher(send_key=first, receive_key=second)
    return SessionCipher(send_key=second, receive_key=first)

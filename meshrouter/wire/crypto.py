"""Theory of operation: the encrypted session between two routers.

When a password is set, the handshake runs CPace (``pake.py``): each connection
uses a fresh X25519 scalar, and both ends end up with the same 64-byte
intermediate session key ``ISK`` iff they used the same password and saw the
same two handshake headers.  This module turns ``ISK`` into two keys with
HKDF-SHA256:

- ``info = b"meshrouter session v2" + lower_share + higher_share``: binds the
  keys to this connection's two key shares, in an order both ends agree on;
- 64 bytes of output: the side whose share sorts lower sends with bytes
  0..31 and receives with bytes 32..63, the other side the reverse, so the two
  directions never share a key (a frame cannot be reflected back to its sender).

The password reaches the keys only through the CPace generator, never as a
hash in the key derivation: a recorded handshake gives an attacker nothing to
test password guesses against (issue 15, item 6).

Frames are sealed with ChaCha20-Poly1305.  The nonce is 4 zero bytes plus an
8-byte big-endian counter; the sender counts frames sent, and the receiver
counts frames opened and uses its own count as the expected nonce (the nonce is
never transmitted).  A replayed, reordered, dropped, truncated or tampered frame
therefore fails authentication.  A counter never wraps: when it is exhausted
the session refuses to go on, and a new connection brings new keys.
"""

from __future__ import annotations

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from meshrouter.errors import DecryptionError, MalformedMessageError, ProtocolError
from meshrouter.wire.pake import ISK_SIZE, SHARE_SIZE

KEY_SIZE = 32
TAG_SIZE = 16
NONCE_PREFIX = bytes(4)
COUNTER_LIMIT = 1 << 64  # counters run 0 .. COUNTER_LIMIT - 1, never wrap

SESSION_INFO_LABEL = b"meshrouter session v2"


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


def derive_session_cipher(isk: bytes, local_share: bytes, remote_share: bytes) -> SessionCipher:
    """This end's SessionCipher from CPace's ``ISK`` and the two key shares."""
    if len(isk) != ISK_SIZE:
        raise ValueError(f"the intermediate session key must be {ISK_SIZE} bytes")
    if len(remote_share) != SHARE_SIZE or remote_share == local_share:
        raise MalformedMessageError(
            f"the remote's key share must be {SHARE_SIZE} bytes and differ from ours"
        )
    lower, higher = sorted((local_share, remote_share))
    keys = HKDF(
        algorithm=hashes.SHA256(),
        length=2 * KEY_SIZE,
        salt=None,
        info=SESSION_INFO_LABEL + lower + higher,
    ).derive(isk)
    first, second = keys[:KEY_SIZE], keys[KEY_SIZE:]
    if local_share == lower:
        return SessionCipher(send_key=first, receive_key=second)
    return SessionCipher(send_key=second, receive_key=first)

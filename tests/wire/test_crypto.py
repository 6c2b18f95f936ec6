from __future__ import annotations

import hashlib

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from hypothesis import given, settings
from hypothesis import strategies as st

from meshrouter.errors import DecryptionError, MalformedMessageError, ProtocolError
from meshrouter.wire.crypto import (
    COUNTER_LIMIT,
    SessionCipher,
    derive_session_cipher,
    public_key_bytes,
)

from .support import PASSWORD, private_key


def pair(
    password_a: bytes = PASSWORD, password_b: bytes = PASSWORD
) -> tuple[SessionCipher, SessionCipher]:
    key_a, key_b = private_key(1), private_key(2)
    a = derive_session_cipher(key_a, public_key_bytes(key_b), password_a)
    b = derive_session_cipher(key_b, public_key_bytes(key_a), password_b)
    return a, b


def test_round_trip_both_directions() -> None:
    a, b = pair()
    for i in range(5):
        message = f"message {i}".encode()
        assert b.open(a.seal(message)) == message
        assert a.open(b.seal(message * 2)) == message * 2
    assert b.open(a.seal(b"")) == b""


def test_sealed_frame_is_plaintext_plus_16_byte_tag() -> None:
    a, _ = pair()
    assert len(a.seal(b"x" * 100)) == 116


def test_derivation_follows_the_documented_design() -> None:
    """Recompute the keys by hand: HKDF salt/info, lower key sends with bytes 0..31."""
    key_a, key_b = private_key(1), private_key(2)
    pub_a, pub_b = public_key_bytes(key_a), public_key_bytes(key_b)
    lower, higher = sorted((pub_a, pub_b))
    okm = HKDF(
        algorithm=hashes.SHA256(),
        length=64,
        salt=hashlib.sha256(b"meshrouter password v1" + PASSWORD).digest(),
        info=b"meshrouter session v1" + lower + higher + hashlib.sha256(b"").digest(),
    ).derive(key_a.exchange(key_b.public_key()))
    a, b = pair()
    lower_side, higher_side = (a, b) if pub_a == lower else (b, a)
    nonce0 = bytes(4) + (0).to_bytes(8, "big")
    nonce1 = bytes(4) + (1).to_bytes(8, "big")
    assert lower_side.seal(b"hi") == ChaCha20Poly1305(okm[:32]).encrypt(nonce0, b"hi", None)
    assert lower_side.seal(b"hi") == ChaCha20Poly1305(okm[:32]).encrypt(nonce1, b"hi", None)
    assert higher_side.seal(b"yo") == ChaCha20Poly1305(okm[32:]).encrypt(nonce0, b"yo", None)


def test_replayed_frame_fails() -> None:
    a, b = pair()
    sealed = a.seal(b"once")
    assert b.open(sealed) == b"once"
    with pytest.raises(DecryptionError):
        b.open(sealed)


def test_reordered_frames_fail() -> None:
    a, b = pair()
    first, second = a.seal(b"first"), a.seal(b"second")
    with pytest.raises(DecryptionError):
        b.open(second)
    assert b.open(first) == b"first"  # a failed open does not advance the counter


def test_dropped_frame_makes_the_next_one_fail() -> None:
    a, b = pair()
    a.seal(b"lost in transit")
    with pytest.raises(DecryptionError, match="failed authentication"):
        b.open(a.seal(b"next"))


@settings(max_examples=200, deadline=None)
@given(
    plaintext=st.binary(max_size=64),
    position=st.integers(min_value=0),
    flip=st.integers(min_value=1, max_value=255),
)
def test_any_tampered_byte_fails(plaintext: bytes, position: int, flip: int) -> None:
    a, b = pair()
    sealed = bytearray(a.seal(plaintext))
    sealed[position % len(sealed)] ^= flip
    with pytest.raises(DecryptionError):
        b.open(bytes(sealed))


@pytest.mark.parametrize("keep", [0, 1, 15, 16, 20])
def test_truncated_frame_fails(keep: int) -> None:
    a, b = pair()
    sealed = a.seal(b"a message of some length")
    with pytest.raises(DecryptionError):
        b.open(sealed[:keep])
    with pytest.raises(DecryptionError):
        b.open(sealed + b"\x00")


def test_different_passwords_fail() -> None:
    a, b = pair(password_a=b"one password", password_b=b"another password")
    with pytest.raises(DecryptionError):
        b.open(a.seal(b"hello"))
    with pytest.raises(DecryptionError):
        a.open(b.seal(b"hello"))


def test_two_directions_use_different_keys() -> None:
    a, b = pair()
    # Same plaintext, same counter, different direction: different ciphertext.
    assert a.seal(b"same") != b.seal(b"same")
    # A frame reflected back to its sender does not open.
    a2, _ = pair()
    with pytest.raises(DecryptionError):
        a2.open(a2.seal(b"reflected"))


def test_send_counter_exhaustion_raises() -> None:
    a, b = pair()
    a._send_counter = COUNTER_LIMIT - 1
    b._receive_counter = COUNTER_LIMIT - 1
    assert b.open(a.seal(b"last")) == b"last"
    with pytest.raises(ProtocolError, match="2\\^64"):
        a.seal(b"one too many")
    with pytest.raises(DecryptionError, match="2\\^64"):
        b.open(b"\x00" * 32)


@pytest.mark.parametrize("remote", [b"", b"\x01" * 31, b"\x01" * 33])
def test_remote_public_key_of_wrong_size_is_malformed(remote: bytes) -> None:
    with pytest.raises(MalformedMessageError, match="32 bytes"):
        derive_session_cipher(private_key(1), remote, PASSWORD)


def test_remote_public_key_equal_to_ours_is_malformed() -> None:
    key = private_key(1)
    with pytest.raises(MalformedMessageError, match="our own"):
        derive_session_cipher(key, public_key_bytes(key), PASSWORD)


def test_low_order_remote_public_key_is_malformed() -> None:
    with pytest.raises(MalformedMessageError, match="low-order"):
        derive_session_cipher(private_key(1), bytes(32), PASSWORD)

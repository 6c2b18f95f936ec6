from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from meshrouter.errors import DecryptionError, MalformedMessageError, ProtocolError
from meshrouter.wire.crypto import COUNTER_LIMIT, SessionCipher, derive_session_cipher

from . import oracle
from .support import PASSWORD, cipher_pair


def pair(
    password_a: bytes = PASSWORD, password_b: bytes = PASSWORD
) -> tuple[SessionCipher, SessionCipher]:
    return cipher_pair(password_a, password_b)


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
    """Recompute the keys with the oracle: CPace ISK, HKDF info, lower share sends
    with bytes 0..31, nonce = 4 zero bytes + 64-bit counter."""
    scalar_a, scalar_b = bytes([1]) * 32, bytes([2]) * 32
    generator = oracle.cpace_generator(PASSWORD, oracle.MESH_CI, b"")
    share_a, share_b = oracle.x25519(scalar_a, generator), oracle.x25519(scalar_b, generator)
    isk_a = oracle.cpace_isk(scalar_a, share_a, b"", share_b, b"")
    send_a, receive_a = oracle.session_keys(isk_a, share_a, share_b)
    a, b = pair()
    assert a.seal(b"hi") == oracle.seal(send_a, 0, b"hi")
    assert a.seal(b"hi") == oracle.seal(send_a, 1, b"hi")
    assert b.seal(b"yo") == oracle.seal(receive_a, 0, b"yo")
    assert a.open(oracle.seal(receive_a, 0, b"back")) == b"back"


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


@pytest.mark.parametrize("remote", [b"", b"\x01" * 31, b"\x01" * 33, b"\x05" * 32])
def test_remote_share_of_wrong_size_or_equal_to_ours_is_malformed(remote: bytes) -> None:
    with pytest.raises(MalformedMessageError, match="32 bytes and differ"):
        derive_session_cipher(bytes(64), b"\x05" * 32, remote)


def test_isk_of_the_wrong_size_is_a_programming_error() -> None:
    with pytest.raises(ValueError, match="64 bytes"):
        derive_session_cipher(bytes(32), b"\x05" * 32, b"\x06" * 32)

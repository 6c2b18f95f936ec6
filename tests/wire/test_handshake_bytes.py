"""The handshake's exact bytes, built by independent oracles (oracle.py: msgpack
by hand, RFC 7748 X25519, CPace from the draft), and what a party without the
password can learn from a transcript."""

from __future__ import annotations

import hashlib

import pytest
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from meshrouter.errors import WrongPasswordError
from meshrouter.wire.handshake import (
    MAGIC,
    PROTOCOL_MAX_VERSION,
    PROTOCOL_MIN_VERSION,
    Handshake,
)
from meshrouter.wire.messages import GossipMsg

from . import oracle
from .support import NAME_A, PASSWORD, config, identity, identity_b

SCALAR_B = bytes([0x42]) * 32


def oracle_share(scalar: bytes, password: bytes = PASSWORD) -> bytes:
    return oracle.x25519(scalar, oracle.cpace_generator(password, oracle.MESH_CI, b""))


def test_protocol_constants() -> None:
    assert MAGIC == b"meshrtr"
    assert PROTOCOL_MIN_VERSION == PROTOCOL_MAX_VERSION == 6


def test_plain_header_exact_bytes() -> None:
    assert Handshake(config(identity())).start() == oracle.header(6, 6, None)


def test_encrypted_header_exact_bytes() -> None:
    header = Handshake(config(identity(), PASSWORD, key_seed=7)).start()
    assert header == oracle.header(6, 6, oracle_share(bytes([7]) * 32))
    assert len(header) == 10 + 32


def test_header_carries_the_configured_version_range() -> None:
    assert Handshake(config(identity(), min_version=3, max_version=9)).start() == (
        oracle.header(3, 9, None)
    )


def test_plain_identity_frame_exact_bytes() -> None:
    local = identity(nickname="x" * 40, uid=(1 << 64) - 1, conn_id=300, cluster_id="c" * 64)
    handshake = Handshake(config(local))
    handshake.start()
    out = handshake.receive_data(oracle.header(6, 6, None))
    assert out == oracle.frame(oracle.mp(oracle.identity_map(local)))


def sealed_exchange(local_seed: int = 1) -> tuple[Handshake, bytes, bytes, bytes, bytes]:
    """Run our side against an oracle-built remote; return the handshake, our
    identity frame, and the oracle's (send, receive) keys for the remote plus
    the remote's header."""
    handshake = Handshake(config(identity(), PASSWORD, key_seed=local_seed))
    our_header = handshake.start()
    share_b = oracle_share(SCALAR_B)
    remote_header = oracle.header(6, 6, share_b)
    out = handshake.receive_data(remote_header)
    isk = oracle.cpace_isk(SCALAR_B, share_b, remote_header[:10], our_header[10:], our_header[:10])
    send_b, receive_b = oracle.session_keys(isk, share_b, our_header[10:])
    return handshake, out, send_b, receive_b, remote_header


def test_encrypted_identity_frame_and_first_message_exact_bytes() -> None:
    handshake, out, send_b, receive_b, _ = sealed_exchange()
    body = oracle.mp(oracle.identity_map(identity()))
    assert out == oracle.frame(oracle.seal(receive_b, 0, body))
    remote = identity_b()
    handshake.receive_data(oracle.frame(oracle.seal(send_b, 0, oracle.mp(
        oracle.identity_map(remote)))))
    assert handshake.done and handshake.result.remote == remote
    session = handshake.result.session
    message = GossipMsg("topology", NAME_A, b"\x00\x01")
    expected_body = oracle.mp([4, "topology", NAME_A, b"\x00\x01"])
    assert session.encode(message) == oracle.frame(oracle.seal(receive_b, 1, expected_body))
    assert session.receive_data(oracle.frame(oracle.seal(send_b, 1, expected_body))) == [message]


def test_identity_sealed_with_other_keys_is_a_wrong_password() -> None:
    handshake, _, send_b, _, _ = sealed_exchange()
    wrong = bytes(a ^ 1 for a in send_b)
    frame = oracle.frame(oracle.seal(wrong, 0, oracle.mp(oracle.identity_map(identity_b()))))
    with pytest.raises(WrongPasswordError, match="password differs"):
        handshake.receive_data(frame)


# -- what a party without the password learns ------------------------------------

DICTIONARY = [b"123456", b"password", b"letmein", PASSWORD, b"hunter2", b"s3cret"]


def _opens(key: bytes, sealed: bytes) -> bool:
    try:
        ChaCha20Poly1305(key).decrypt(bytes(12), sealed, None)
    except InvalidTag:
        return False
    return True


def _keys_an_attacker_can_derive(
    attacker_scalar: bytes, attacker_header: bytes, router_header: bytes, candidate: bytes
) -> list[bytes]:
    """Every key a party holding the transcript and its own scalar can compute
    for one candidate password: CPace as if its share were for the candidate
    (the same K: it cannot re-target its share), and the protocol-1 derivation
    (DH secret, HKDF salted with a hash of the password)."""
    router_share = router_header[10:]
    attacker_share = attacker_header[10:]
    keys: list[bytes] = []
    isk = oracle.cpace_isk(attacker_scalar, attacker_share, attacker_header[:10], router_share,
                           router_header[:10])
    keys += oracle.session_keys(isk, attacker_share, router_share)
    secret = oracle.x25519(attacker_scalar, router_share)
    lower, higher = sorted((attacker_share, router_share))
    transcript = b"".join(sorted((attacker_header, router_header)))
    for label in (b"meshrouter session v1", b"meshrouter session v2"):
        okm = HKDF(
            hashes.SHA256(), 64,
            hashlib.sha256(b"meshrouter password v1" + candidate).digest(),
            label + lower + higher + hashlib.sha256(transcript).digest(),
        ).derive(secret)
        keys += [okm[:32], okm[32:]]
    # And CPace keys if the router's scalar were the attacker's own (it is not):
    # what "recompute with the candidate's generator" amounts to without it.
    own = oracle.x25519(attacker_scalar, oracle.cpace_generator(candidate, oracle.MESH_CI, b""))
    if own != router_share:
        isk2 = oracle.cpace_isk(attacker_scalar, own, router_header[:10], attacker_share,
                                attacker_header[:10])
        keys += oracle.session_keys(isk2, own, attacker_share)
    return keys


BASEPOINT = (9).to_bytes(32, "little")


@pytest.mark.parametrize(
    ("attack", "guess"),
    [("cpace", b"a wrong guess"), ("cpace", PASSWORD), ("plain-dh", None)],
    ids=["cpace-wrong-guess", "cpace-right-guess", "plain-dh"],
)
def test_a_transcript_tests_only_the_guess_made_live(attack: str, guess: bytes | None) -> None:
    """An attacker connects (or is dialled) and answers the router's header with
    its own share: CPace for one guess, or a plain Diffie-Hellman public key.  The
    router sends its sealed identity at once.  Offline, with the transcript and
    its own scalar, the attacker can open that frame only if its live guess was
    right: trying a dictionary that holds the real password opens nothing.
    (Protocol 1 -- DH plus a hash of the password in the KDF -- fails this test:
    with a plain DH share, the real password's candidate keys open the frame.)"""
    attacker_scalar = bytes([0x55]) * 32
    router = Handshake(config(identity(), PASSWORD, key_seed=9))
    router_header = router.start()
    if guess is not None:
        share = oracle_share(attacker_scalar, guess)
    else:
        share = oracle.x25519(attacker_scalar, BASEPOINT)
    attacker_header = router_header[:10] + share  # speaks whatever version the router speaks
    sealed_identity = router.receive_data(attacker_header)[4:]  # sent before any proof
    assert sealed_identity, "the router sends its sealed identity at once"
    opened_by = [
        candidate
        for candidate in DICTIONARY
        if any(
            _opens(key, sealed_identity)
            for key in _keys_an_attacker_can_derive(
                attacker_scalar, attacker_header, router_header, candidate)
        )
    ]
    if guess == PASSWORD:
        assert opened_by == DICTIONARY  # the live guess was right: any candidate "opens"
    else:
        assert opened_by == []


def test_the_router_share_does_not_depend_on_anything_but_scalar_and_password() -> None:
    """Equal scalars with different passwords give unrelated shares; a share for
    one password is never the share for another with the same scalar."""
    shares = {Handshake(config(identity(), pw, key_seed=9)).start()[10:] for pw in DICTIONARY}
    assert len(shares) == len(DICTIONARY)

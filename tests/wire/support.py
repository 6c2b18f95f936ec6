"""Shared helpers for the wire tests: identities, keys and a two-sided byte pump."""

from __future__ import annotations

from collections.abc import Iterator

from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from meshrouter.errors import ProtocolError
from meshrouter.names import PeerName
from meshrouter.wire.crypto import SessionCipher, derive_session_cipher
from meshrouter.wire.handshake import Handshake, HandshakeConfig, HandshakeResult
from meshrouter.wire.identity import Identity
from meshrouter.wire.pake import calculate_generator, intermediate_session_key, public_share

NAME_A = PeerName(0x02_00_00_00_00_0A)
NAME_B = PeerName(0x02_00_00_00_00_0B)
PASSWORD = b"correct horse battery staple"

Outcome = HandshakeResult | ProtocolError


def identity(
    name: int = NAME_A,
    nickname: str = "alpha",
    uid: int = 0x1111,
    conn_id: int = 0xA0A0,
    short_id: int = 1,
    cluster_id: str = "",
) -> Identity:
    return Identity(PeerName(name), nickname, uid, conn_id, short_id, cluster_id)


def identity_b(**changes: object) -> Identity:
    fields: dict[str, object] = {
        "name": NAME_B,
        "nickname": "beta",
        "uid": 0x2222,
        "conn_id": 0xB0B0,
        "short_id": 2,
    }
    fields.update(changes)
    return identity(**fields)  # type: ignore[arg-type]


def private_key(seed: int) -> X25519PrivateKey:
    """A deterministic X25519 key (tests only; the shell uses OS randomness)."""
    return X25519PrivateKey.from_private_bytes(bytes([seed]) * 32)


def share(seed: int, password: bytes = PASSWORD) -> bytes:
    """The CPace key share a router with key ``seed`` and ``password`` sends."""
    return public_share(private_key(seed), calculate_generator(password))


def cipher_pair(
    password_a: bytes = PASSWORD, password_b: bytes = PASSWORD, seeds: tuple[int, int] = (1, 2)
) -> tuple[SessionCipher, SessionCipher]:
    """Two ends' session ciphers after a CPace exchange (empty associated data)."""
    key_a, key_b = private_key(seeds[0]), private_key(seeds[1])
    share_a = public_share(key_a, calculate_generator(password_a))
    share_b = public_share(key_b, calculate_generator(password_b))
    isk_a = intermediate_session_key(key_a, share_a, b"", share_b, b"")
    isk_b = intermediate_session_key(key_b, share_b, b"", share_a, b"")
    return (
        derive_session_cipher(isk_a, share_a, share_b),
        derive_session_cipher(isk_b, share_b, share_a),
    )


def config(
    ident: Identity,
    password: bytes | None = None,
    key_seed: int = 1,
    **kwargs: int,
) -> HandshakeConfig:
    key = private_key(key_seed) if password is not None else None
    return HandshakeConfig(ident, password=password, private_key=key, **kwargs)


def pieces(data: bytes, chunk: int | None) -> Iterator[bytes]:
    if chunk is None:
        if data:
            yield data
        return
    for i in range(0, len(data), chunk):
        yield data[i : i + chunk]


def drive(a: Handshake, b: Handshake, chunk: int | None = None) -> tuple[Outcome, Outcome]:
    """Run two handshakes against each other until both finished or failed.

    ``chunk=None`` delivers each burst whole, ``chunk=1`` byte by byte.  A side
    that fails still gets its ``unsent`` bytes delivered, like a shell that
    flushes before closing, so the other side can reach its own verdict.
    """
    sides = (a, b)
    outcomes: list[Outcome | None] = [None, None]
    inbox = [b.start(), a.start()]
    while any(inbox):
        for i in (0, 1):
            data, inbox[i] = inbox[i], b""
            if outcomes[i] is not None:
                continue
            for piece in pieces(data, chunk):
                try:
                    inbox[1 - i] += sides[i].receive_data(piece)
                except ProtocolError as exc:
                    inbox[1 - i] += sides[i].unsent
                    outcomes[i] = exc
                    break
            if outcomes[i] is None and sides[i].done:
                outcomes[i] = sides[i].result
    assert outcomes[0] is not None, "side A neither finished nor failed"
    assert outcomes[1] is not None, "side B neither finished nor failed"
    return outcomes[0], outcomes[1]


def drive_ok(
    a_config: HandshakeConfig, b_config: HandshakeConfig, chunk: int | None = None
) -> tuple[HandshakeResult, HandshakeResult]:
    out_a, out_b = drive(Handshake(a_config), Handshake(b_config), chunk)
    assert isinstance(out_a, HandshakeResult), out_a
    assert isinstance(out_b, HandshakeResult), out_b
    return out_a, out_b

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from meshrouter.errors import (
    DecryptionError,
    FrameTooLargeError,
    MalformedMessageError,
    ProtocolError,
)
from meshrouter.wire.framing import encode_frame
from meshrouter.wire.messages import GossipMsg, Heartbeat, Message
from meshrouter.wire.session import Session

from .strategies import messages
from .support import NAME_A, cipher_pair


def session_pair(encrypted: bool, max_frame: int = 1 << 20) -> tuple[Session, Session]:
    if not encrypted:
        return Session(None, max_frame), Session(None, max_frame)
    a, b = cipher_pair()
    return Session(a, max_frame), Session(b, max_frame)


def test_plain_exact_bytes() -> None:
    session = Session(None)
    assert not session.encrypted
    assert session.encode(Heartbeat()) == b"\x00\x00\x00\x02\x91\x00"
    assert session.receive_data(b"\x00\x00\x00\x02\x91\x00" * 2) == [Heartbeat(), Heartbeat()]


def test_encrypted_frame_is_sealed_body_with_length() -> None:
    a, b = session_pair(encrypted=True)
    assert a.encrypted
    frame = a.encode(Heartbeat())
    assert frame[:4] == (2 + 16).to_bytes(4, "big")
    assert b.receive_data(frame) == [Heartbeat()]


@settings(max_examples=100, deadline=None)
@given(
    msgs=st.lists(messages, max_size=8),
    encrypted=st.booleans(),
    chunk=st.integers(min_value=1, max_value=300),
)
def test_round_trip(msgs: list[Message], encrypted: bool, chunk: int) -> None:
    a, b = session_pair(encrypted)
    stream = b"".join(a.encode(m) for m in msgs)
    received: list[Message] = []
    for i in range(0, len(stream), chunk):
        received += b.receive_data(stream[i : i + chunk])
    assert received == msgs


def test_oversize_incoming_frame_refused() -> None:
    session = Session(None, max_frame=100)
    with pytest.raises(FrameTooLargeError):
        session.receive_data((101).to_bytes(4, "big"))


@pytest.mark.parametrize("encrypted", [False, True])
def test_oversize_outgoing_message_is_refused_without_desynchronising(encrypted: bool) -> None:
    a, b = session_pair(encrypted, max_frame=200)
    with pytest.raises(FrameTooLargeError, match="refusing to send"):
        a.encode(GossipMsg("c", NAME_A, b"x" * 300))
    # The refused message consumed no nonce: the next one still opens.
    assert b.receive_data(a.encode(Heartbeat())) == [Heartbeat()]


def test_tampered_encrypted_frame_is_a_decryption_error() -> None:
    a, b = session_pair(encrypted=True)
    frame = bytearray(a.encode(GossipMsg("c", NAME_A, b"payload")))
    frame[-1] ^= 1
    with pytest.raises(DecryptionError):
        b.receive_data(bytes(frame))


def test_replayed_encrypted_frame_is_a_decryption_error() -> None:
    a, b = session_pair(encrypted=True)
    frame = a.encode(Heartbeat())
    assert b.receive_data(frame) == [Heartbeat()]
    with pytest.raises(DecryptionError):
        b.receive_data(frame)


def test_invalid_plain_body_is_malformed_and_session_stays_failed() -> None:
    session = Session(None)
    with pytest.raises(MalformedMessageError) as first:
        session.receive_data(encode_frame(b"\x91\x63"))  # tag 99
    with pytest.raises(MalformedMessageError) as again:
        session.receive_data(encode_frame(b"\x91\x00"))
    assert again.value is first.value


@settings(max_examples=200, deadline=None)
@given(
    data=st.binary(max_size=500),
    encrypted=st.booleans(),
    chunk=st.integers(min_value=1, max_value=100),
)
def test_arbitrary_bytes_raise_only_protocol_errors(
    data: bytes, encrypted: bool, chunk: int
) -> None:
    _, session = session_pair(encrypted, max_frame=256)
    try:
        for i in range(0, len(data), chunk):
            session.receive_data(data[i : i + chunk])
    except ProtocolError:
        pass


@settings(max_examples=200, deadline=None)
@given(bodies=st.lists(st.binary(max_size=60), max_size=5))
def test_arbitrary_framed_bodies_raise_only_protocol_errors(bodies: list[bytes]) -> None:
    session = Session(None)
    try:
        session.receive_data(b"".join(encode_frame(body) for body in bodies))
    except ProtocolError:
        pass

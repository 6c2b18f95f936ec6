from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from meshrouter.codec import pack
from meshrouter.errors import MalformedMessageError, ProtocolError
from meshrouter.names import PeerName
from meshrouter.wire.messages import (
    BroadcastMsg,
    DigestMsg,
    GossipMsg,
    Heartbeat,
    Message,
    UnicastMsg,
    decode_message,
    encode_message,
)

from .strategies import messages, msgpack_values


@settings(max_examples=300, deadline=None)
@given(messages)
def test_decode_encode_round_trip(msg: Message) -> None:
    assert decode_message(encode_message(msg)) == msg


def test_exact_bytes() -> None:
    assert encode_message(Heartbeat()) == b"\x91\x00"
    assert encode_message(GossipMsg("t", PeerName(1), b"p")) == b"\x94\x04\xa1t\x01\xc4\x01p"
    digest = DigestMsg("t", PeerName(2), b"", True)
    assert encode_message(digest) == b"\x95\x07\xa1t\x02\xc4\x00\xc3"


def test_every_kind_round_trips() -> None:
    for msg in (
        Heartbeat(),
        GossipMsg("topology", PeerName(7), b"state"),
        UnicastMsg("ipam", PeerName(7), PeerName(8), b"request"),
        BroadcastMsg("dns", PeerName(0xFFFFFFFFFFFF), b""),
        DigestMsg("topology", PeerName(0), b"\x00" * 32, False),
    ):
        assert decode_message(encode_message(msg)) == msg


@pytest.mark.parametrize(
    ("fields", "reason"),
    [
        ([], "non-empty array"),
        ({"tag": 0}, "non-empty array"),
        ([99], "unknown message tag"),
        ([True], "unknown message tag"),
        ([0, "extra"], "fields, expected 1"),
        ([4, "", 1, b"x"], "channel name"),
        ([4, "c" * 65, 1, b"x"], "channel name"),
        ([4, "c", 1 << 48, b"x"], "invalid peer name"),
        ([4, "c", -1, b"x"], "invalid peer name"),
        ([4, "c", True, b"x"], "invalid peer name"),
        ([4, "c", 1, "text, not bytes"], "payload"),
        ([5, "c", 1, "two", b"x"], "invalid peer name"),
        ([7, "c", 1, b"d", 1], "reply"),
    ],
)
def test_invalid_messages_are_refused(fields: object, reason: str) -> None:
    with pytest.raises(MalformedMessageError, match=reason):
        decode_message(pack(fields))


def test_size_cap_is_applied() -> None:
    body = encode_message(GossipMsg("c", PeerName(1), b"x" * 100))
    with pytest.raises(MalformedMessageError, match="exceeds"):
        decode_message(body, max_size=50)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200))
def test_arbitrary_bytes_raise_only_protocol_errors(data: bytes) -> None:
    try:
        decode_message(data)
    except ProtocolError:
        pass


@settings(max_examples=300, deadline=None)
@given(st.lists(msgpack_values, max_size=6), st.sampled_from([0, 4, 5, 6, 7]))
def test_wrong_structures_raise_only_protocol_errors(fields: list[object], tag: int) -> None:
    for value in (fields, [tag, *fields]):
        try:
            decode_message(pack(value))
        except ProtocolError:
            pass

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

from . import oracle
from .strategies import messages, msgpack_values


@settings(max_examples=300, deadline=None)
@given(messages)
def test_decode_encode_round_trip(msg: Message) -> None:
    assert decode_message(encode_message(msg)) == msg


def test_exact_bytes() -> None:
    assert encode_message(Heartbeat()) == b"\x91\x00"
    assert encode_message(GossipMsg("t", PeerName(1), b"p")) == b"\x94\x04\xa1t\x01\xc4\x01p"
    assert encode_message(BroadcastMsg("t", PeerName(1), b"p")) == b"\x95\x06\xa1t\x01\xc4\x01p\xc0"
    assert encode_message(BroadcastMsg("t", PeerName(1), b"p", b"r")) == (
        b"\x95\x06\xa1t\x01\xc4\x01p\xc4\x01r")
    digest = DigestMsg("t", PeerName(2), b"", True)
    assert encode_message(digest) == b"\x95\x07\xa1t\x02\xc4\x00\xc3"


@settings(max_examples=200, deadline=None)
@given(messages)
def test_encoding_matches_the_documented_layout(msg: Message) -> None:
    """Oracle: the documented array [tag, fields...] encoded by hand."""
    layout: list[object]
    match msg:
        case Heartbeat():
            layout = [0]
        case GossipMsg(channel, src, payload):
            layout = [4, channel, src, payload]
        case UnicastMsg(channel, src, dst, payload):
            layout = [5, channel, src, dst, payload]
        case BroadcastMsg(channel, src, payload, route):
            layout = [6, channel, src, payload, route]
        case DigestMsg(channel, src, digest, reply):
            layout = [7, channel, src, digest, reply]
    assert encode_message(msg) == oracle.mp(layout)
    assert decode_message(oracle.mp(layout)) == msg


def test_every_kind_round_trips() -> None:
    for msg in (
        Heartbeat(),
        GossipMsg("topology", PeerName(7), b"state"),
        UnicastMsg("ipam", PeerName(7), PeerName(8), b"request"),
        BroadcastMsg("dns", PeerName(0xFFFFFFFFFFFF), b""),
        BroadcastMsg("dns", PeerName(3), b"p", b""),
        BroadcastMsg("dns", PeerName(3), b"p", b"\x0a\x00\x00\x00\x00\x01\x00\x01"),
        DigestMsg("topology", PeerName(0), b"\x00" * 32, False),
    ):
        assert decode_message(encode_message(msg)) == msg


@pytest.mark.parametrize(
    ("fields", "reason"),
    [
        ([], "empty array"),
        ({"tag": 0}, "not a msgpack array"),
        ([0] * 6, "6 items, more than 5"),
        ([4, ["c"], 1, b"x"], "field 1 is a nested array or map"),
        ([4, "c", {}, b"x"], "field 2 is a nested array or map"),
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
        ([6, "c", 1, b"x"], "message tag 6 has 4 fields, expected 5"),  # a protocol-5 broadcast
        ([6, "c", 1, b"x", "route"], "broadcast route"),
        ([6, "c", 1, b"x", 7], "broadcast route"),
    ],
)
def test_invalid_messages_are_refused(fields: object, reason: str) -> None:
    with pytest.raises(MalformedMessageError, match=reason):
        decode_message(pack(fields))


def test_size_cap_is_applied() -> None:
    body = encode_message(GossipMsg("c", PeerName(1), b"x" * 100))
    with pytest.raises(MalformedMessageError, match="exceeds"):
        decode_message(body, max_size=50)


@pytest.mark.parametrize(
    "text", [b"\xff\xfe", b"\xed\xa0\x80", b"ok\xc3"], ids=["invalid", "surrogate", "truncated"]
)
def test_strings_that_are_not_utf8_are_refused_not_replaced(text: bytes) -> None:
    body = b"\x94\x04" + bytes([0xA0 | len(text)]) + text + b"\x01\xc4\x01x"
    with pytest.raises(MalformedMessageError, match="undecodable"):
        decode_message(body)


def test_bytes_after_the_message_are_refused() -> None:
    with pytest.raises(MalformedMessageError, match="1 bytes follow the end"):
        decode_message(encode_message(Heartbeat()) + b"\x00")


def test_a_body_of_nested_empty_maps_is_refused_before_it_is_built() -> None:
    """Issue 15 item 7: the schema applies while decoding.  Before, this 1 MiB
    body was decoded into a million dicts (~70 MB) and then refused; now the
    only allocation is the decoder's copy of the input."""
    import tracemalloc

    maps = b"\xdd" + (1_000_000).to_bytes(4, "big") + b"\x80" * 1_000_000
    for body in (maps, b"\x94\x04" + maps):
        tracemalloc.start()
        try:
            with pytest.raises(MalformedMessageError):
                decode_message(body)
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        assert peak < 4 * len(body)


def _assert_reencodes(msg: Message) -> None:
    """A message that decoded must re-encode to a body that decodes to itself."""
    assert decode_message(encode_message(msg)) == msg


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200))
def test_arbitrary_bytes_raise_only_protocol_errors(data: bytes) -> None:
    try:
        msg = decode_message(data)
    except ProtocolError:
        return
    _assert_reencodes(msg)


@settings(max_examples=300, deadline=None)
@given(st.lists(msgpack_values, max_size=6), st.sampled_from([0, 4, 5, 6, 7, 8]))
def test_wrong_structures_raise_only_protocol_errors(fields: list[object], tag: int) -> None:
    for value in (fields, [tag, *fields]):
        try:
            msg = decode_message(pack(value))
        except ProtocolError:
            continue
        _assert_reencodes(msg)

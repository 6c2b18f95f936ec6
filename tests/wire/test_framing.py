from __future__ import annotations

import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from meshrouter.errors import ConfigError, FrameTooLargeError, ProtocolError
from meshrouter.wire.framing import (
    DEFAULT_MAX_FRAME,
    FRAME_HEADER_SIZE,
    FrameDecoder,
    encode_frame,
)


def test_encode_frame_exact_bytes() -> None:
    assert encode_frame(b"abc") == b"\x00\x00\x00\x03abc"
    assert encode_frame(b"") == b"\x00\x00\x00\x00"
    assert FRAME_HEADER_SIZE == 4
    assert DEFAULT_MAX_FRAME == 10 * 1024 * 1024


def test_encode_frame_refuses_oversize_body() -> None:
    assert encode_frame(b"x" * 8, max_frame=8) == b"\x00\x00\x00\x08" + b"x" * 8
    with pytest.raises(FrameTooLargeError, match="9 bytes"):
        encode_frame(b"x" * 9, max_frame=8)


def test_byte_by_byte_and_whole_buffer_give_identical_frames() -> None:
    bodies = [b"", b"a", b"hello world", bytes(range(256)) * 3, b"", b"\x00\x00\x00\x04"]
    stream = b"".join(encode_frame(body) for body in bodies)

    whole = FrameDecoder().feed(stream)

    decoder = FrameDecoder()
    one_by_one: list[bytes] = []
    for i in range(len(stream)):
        one_by_one += decoder.feed(stream[i : i + 1])

    assert whole == bodies
    assert one_by_one == bodies
    assert decoder.buffered == 0


def test_buffered_counts_partial_header_and_body() -> None:
    decoder = FrameDecoder()
    frame = encode_frame(b"abcdef")
    assert decoder.feed(frame[:2]) == []
    assert decoder.buffered == 2
    assert decoder.feed(frame[2:7]) == []
    assert decoder.buffered == 3  # header consumed, 3 body bytes held
    assert decoder.feed(frame[7:] + frame[:1]) == [b"abcdef"]
    assert decoder.buffered == 1


def test_oversize_header_is_refused_before_the_body_arrives() -> None:
    decoder = FrameDecoder(max_frame=100)
    assert decoder.feed(encode_frame(b"y" * 100)) == [b"y" * 100]  # exactly the limit is fine
    with pytest.raises(FrameTooLargeError, match="101 bytes, more than the limit of 100"):
        decoder.feed((101).to_bytes(4, "big"))


def test_oversize_header_split_across_feeds() -> None:
    decoder = FrameDecoder(max_frame=10)
    assert decoder.feed(b"\xff\xff") == []
    assert decoder.feed(b"\xff") == []
    with pytest.raises(FrameTooLargeError):
        decoder.feed(b"\xff")


def test_decoder_stays_failed_after_an_error() -> None:
    decoder = FrameDecoder(max_frame=10)
    with pytest.raises(FrameTooLargeError):
        decoder.feed(b"\x00\x00\x01\x00")
    with pytest.raises(FrameTooLargeError):
        decoder.feed(encode_frame(b"ok"))


@pytest.mark.parametrize("bad", [0, -1, 1 << 32, True])
def test_invalid_max_frame_is_a_config_error(bad: int) -> None:
    with pytest.raises(ConfigError):
        FrameDecoder(max_frame=bad)


@settings(max_examples=200, deadline=None)
@given(
    bodies=st.lists(st.binary(max_size=300), max_size=12),
    cuts=st.lists(st.integers(min_value=0, max_value=4000), max_size=20),
)
def test_round_trip_with_arbitrary_splits(bodies: list[bytes], cuts: list[int]) -> None:
    stream = b"".join(encode_frame(body, max_frame=300) for body in bodies)
    points = sorted({0, len(stream), *(c for c in cuts if c <= len(stream))})
    decoder = FrameDecoder(max_frame=300)
    received: list[bytes] = []
    for start, end in itertools.pairwise(points):
        received += decoder.feed(stream[start:end])
        assert decoder.buffered <= FRAME_HEADER_SIZE + 300
    assert received == bodies
    assert decoder.buffered == 0


@settings(max_examples=200, deadline=None)
@given(data=st.binary(max_size=2000), chunk=st.integers(min_value=1, max_value=64))
def test_arbitrary_bytes_only_raise_frame_too_large_and_stay_bounded(
    data: bytes, chunk: int
) -> None:
    decoder = FrameDecoder(max_frame=64)
    try:
        for i in range(0, len(data), chunk):
            for body in decoder.feed(data[i : i + chunk]):
                assert len(body) <= 64
            assert decoder.buffered <= FRAME_HEADER_SIZE + 64
    except FrameTooLargeError as exc:
        assert isinstance(exc, ProtocolError)


def test_pending_names_the_incomplete_frame() -> None:
    decoder = FrameDecoder()
    assert decoder.pending is None
    decoder.feed(b"\x00\x00")
    assert decoder.pending == (2, None)  # header incomplete
    decoder.feed(b"\x00\x0aabc")
    assert decoder.pending == (4 + 3, 4 + 10)  # 3 of 10 body bytes, header counted
    assert decoder.feed(b"defghij") == [b"abcdefghij"]
    assert decoder.pending is None

"""codec.py: size caps, the object budget, scalar arrays and item-by-item arrays."""

from __future__ import annotations

import struct
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from meshrouter.codec import (
    UNCOUNTED_SIZE,
    _unpack_scalars_checked,
    iter_array,
    pack,
    unpack,
    unpack_scalars,
)
from meshrouter.errors import MalformedMessageError, ProtocolError

from . import oracle
from .strategies import msgpack_values


def big_int_list(count: int) -> bytes:
    """An array32 of ``count`` zeros, by hand: 1 container + ``count`` elements."""
    return b"\xdd" + struct.pack(">I", count) + b"\x00" * count


def test_object_budget_counts_containers_and_elements() -> None:
    count = UNCOUNTED_SIZE + 10  # large enough to be counted
    data = big_int_list(count)
    assert unpack(data, max_objects=count + 1) == [0] * count
    with pytest.raises(MalformedMessageError, match=f"more than {count} objects"):
        unpack(data, max_objects=count)


def test_nested_containers_are_counted() -> None:
    inner = b"\x90" * 40_000  # 40,000 empty arrays
    data = b"\xdc" + struct.pack(">H", 40_000) + inner
    assert len(data) > UNCOUNTED_SIZE // 2
    padded = b"\x92" + data + oracle.mp(b"x" * UNCOUNTED_SIZE)  # [the arrays, padding]
    assert len(padded) > UNCOUNTED_SIZE
    value = unpack(padded, max_objects=40_000 + 40_001 + 3)
    assert len(value[0]) == 40_000
    with pytest.raises(MalformedMessageError, match="objects"):
        unpack(padded, max_objects=40_000 + 40_001 + 2)


def test_small_inputs_are_not_counted() -> None:
    """Documented: inputs up to UNCOUNTED_SIZE skip the hooks (bounded expansion)."""
    assert unpack(big_int_list(100), max_objects=1) == [0] * 100


def test_size_cap_and_trailing_bytes() -> None:
    with pytest.raises(MalformedMessageError, match="exceeds 3"):
        unpack(b"\x94\x01\x02\x03\x04", max_size=3)
    with pytest.raises(MalformedMessageError, match="undecodable"):
        unpack(b"\x01\x02")


def test_invalid_utf8_is_refused_everywhere() -> None:
    bad = b"\xa2\xff\xfe"
    with pytest.raises(MalformedMessageError):
        unpack(bad)
    with pytest.raises(MalformedMessageError):
        unpack_scalars(b"\x91" + bad, what="m", max_size=100, max_items=2, max_str_len=10,
                       max_bin_len=10)
    with pytest.raises(MalformedMessageError):
        list(iter_array(b"\x91" + bad, what="list"))


def scalars(data: bytes, **caps: int) -> list[Any]:
    limits = {"max_size": 1000, "max_items": 4, "max_str_len": 8, "max_bin_len": 8, **caps}
    return unpack_scalars(data, what="msg", **limits)


def test_unpack_scalars_accepts_scalars_only() -> None:
    assert scalars(oracle.mp([1, "ab", b"c", True])) == [1, "ab", b"c", True]
    assert scalars(oracle.mp([None, -5, 1.5])) == [None, -5, 1.5]


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (oracle.mp([1, [2]]), "field 1 is a nested array or map"),
        (oracle.mp([{}]), "field 0 is a nested array or map"),
        (oracle.mp([1, 2, 3, 4, 5]), "5 items, more than 4"),
        (b"\xdd\xff\xff\xff\xff", "more than 4"),
        (oracle.mp({"a": 1}), "not a msgpack array"),
        (oracle.mp([1]) + b"\x00", "1 bytes follow"),
        (oracle.mp(["x" * 9]), "undecodable"),
        (oracle.mp([b"x" * 9]), "undecodable"),
        (b"\x92\x01", "undecodable"),
        (b"", "not a msgpack array"),
    ],
)
def test_unpack_scalars_refusals(data: bytes, reason: str) -> None:
    with pytest.raises(MalformedMessageError, match=reason):
        scalars(data)


def test_iter_array_yields_items_one_at_a_time() -> None:
    data = oracle.mp([[1, 2], "x", {"k": []}])
    items = iter_array(data, what="list")
    assert next(items) == [1, 2]
    assert next(items) == "x"
    assert next(items) == {"k": []}
    with pytest.raises(StopIteration):
        next(items)


def test_iter_array_stops_where_the_caller_stops() -> None:
    """A caller that refuses the first item never pays for the second."""
    second = b"\xdd" + struct.pack(">I", 900_000) + b"\x80" * 900_000
    data = b"\x92\x80" + second  # [{}, [900,000 empty maps]]
    items = iter_array(data, what="list")
    assert next(items) == {}  # the caller would refuse here and close the generator


def test_iter_array_budget_is_per_item() -> None:
    data = oracle.mp([[0] * 10, [0] * 10, [0] * 11])
    items = iter_array(data, what="list", max_objects_per_item=11)
    assert next(items) == [0] * 10
    assert next(items) == [0] * 10
    with pytest.raises(MalformedMessageError, match="item 2 decodes to more than 11 objects"):
        next(items)


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (oracle.mp([1, 2, 3]), "3 items, more than 2"),
        (oracle.mp([1]) + b"\xc0", "1 bytes follow the end of the array"),
        (oracle.mp(7), "not a msgpack array"),
        (b"\x92\x01", "undecodable"),
    ],
)
def test_iter_array_refusals(data: bytes, reason: str) -> None:
    with pytest.raises(MalformedMessageError, match=reason):
        list(iter_array(data, what="list", max_items=2))


@settings(max_examples=300, deadline=None)
@given(msgpack_values)
def test_round_trip_and_the_hand_encoder_agree(value: Any) -> None:
    assert unpack(pack(value)) == value
    assert pack(value) == oracle.mp(value)


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=300))
def test_arbitrary_bytes_decode_or_raise_protocol_errors_and_reencode(data: bytes) -> None:
    for decode in (unpack, lambda d: list(iter_array(d, what="list"))):
        try:
            value = decode(data)
        except ProtocolError:
            continue
        assert unpack(pack(value)) == value  # what decoded re-encodes to the same value


def test_unpack_scalars_refuses_nested_containers_without_building_them() -> None:
    """The one-call fast path caps every array at ``max_items`` and maps at
    none, and refuses an array inside an array as it completes: a deep chain
    of nested arrays or a huge inner container is refused at a small cost,
    with the field-by-field decoder's reason."""
    import tracemalloc

    chain = b"\x91" * 1000 + b"\x90"  # [[[...[]...]]], 1,001 arrays deep
    wide = b"\x92\x01\xdd" + (1_000_000).to_bytes(4, "big") + b"\x90" * 1_000_000
    for body, reason in ((chain, "field 0 is a nested array or map"),
                         (wide, "field 1 is a nested array or map")):
        tracemalloc.start()
        try:
            with pytest.raises(MalformedMessageError, match=reason):
                scalars(body, max_size=len(body))
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        assert peak < 4 * len(body) + 100_000
    # Scalars of every kind come back exactly as the field-by-field decoder gives them.
    data = oracle.mp([None, True, -(2**63), 2**64 - 1, 1.5, "é", b"\x00"])
    limits = {"max_size": 100, "max_items": 7, "max_str_len": 8, "max_bin_len": 8}
    assert scalars(data, **limits) == [None, True, -(2**63), 2**64 - 1, 1.5, "é", b"\x00"]
    assert scalars(data, **limits) == _unpack_scalars_checked(data, "msg", 100, 7, 8, 8)

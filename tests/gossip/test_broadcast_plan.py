"""The broadcast plan's wire form: preorder entries of (48-bit name, 16-bit subtree size)."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from meshrouter.errors import MalformedMessageError
from meshrouter.gossip.broadcast_plan import encode_preorder, split_forest

Tree = tuple[int, tuple["Tree", ...]]


def oracle_entry(name: int, size: int) -> bytes:
    """Written out by hand: six name bytes, big-endian, then two size bytes."""
    return name.to_bytes(6, "big") + size.to_bytes(2, "big")


def oracle_size(tree: Tree) -> int:
    return 1 + sum(oracle_size(child) for child in tree[1])


def oracle_encode(forest: tuple[Tree, ...]) -> bytes:
    return b"".join(oracle_entry(name, oracle_size((name, kids))) + oracle_encode(kids)
                    for name, kids in forest)


def decode_all(forest: bytes) -> tuple[Tree, ...]:
    """The code under test, applied recursively the way forwarders apply it."""
    return tuple((int(name), decode_all(below)) for name, below in split_forest(forest))


def test_exact_bytes_of_a_small_forest() -> None:
    # A with children B and C, then D alone.
    a, b, c, d = 0x0A0000000001, 0x0A0000000002, 0x0A0000000003, 0xFFFFFFFFFFFF
    encoded = encode_preorder([(a, 3), (b, 1), (c, 1), (d, 1)])
    assert encoded == bytes.fromhex(
        "0a0000000001" "0003" "0a0000000002" "0001" "0a0000000003" "0001" "ffffffffffff" "0001")
    assert split_forest(encoded) == [(a, encoded[8:24]), (d, b"")]
    assert split_forest(encoded[8:24]) == [(b, b""), (c, b"")]
    assert [int.from_bytes(name, "big") for name, _ in struct.iter_unpack(">6sH", encoded)] == [
        a, b, c, d]


def test_an_empty_forest_is_a_leaf() -> None:
    assert split_forest(b"") == []


@st.composite
def forests(draw: st.DrawFn) -> tuple[Tree, ...]:
    names = iter(draw(st.lists(st.integers(0, 2**48 - 1), unique=True, max_size=40)))

    def build(budget: int, depth: int) -> tuple[Tree, ...]:
        out = []
        for _ in range(draw(st.integers(0, min(budget, 4)))):
            name = next(names, None)
            if name is None:
                break
            kids = build(budget - 1, depth + 1) if depth < 5 else ()
            out.append((name, kids))
        return tuple(out)

    return build(6, 0)


@settings(max_examples=300, deadline=None)
@given(forests())
def test_decode_of_encode_is_the_forest(forest: tuple[Tree, ...]) -> None:
    encoded = oracle_encode(forest)
    assert decode_all(encoded) == forest


@pytest.mark.parametrize(
    ("forest", "reason"),
    [
        (oracle_entry(1, 1)[:7], "not a whole number"),
        (oracle_entry(1, 0), "subtree size 0"),
        (oracle_entry(1, 2), "overruns"),
        # B's subtree (size 2) would reach past A's (size 2 = A and B only).
        (oracle_entry(1, 2) + oracle_entry(2, 2) + oracle_entry(3, 1), "overruns"),
        (oracle_entry(1, 1) + oracle_entry(1, 1), "lists peer 000000000001 twice"),
        (oracle_entry(1, 2) + oracle_entry(1, 1), "twice"),
    ],
)
def test_malformed_forests_are_refused(forest: bytes, reason: str) -> None:
    with pytest.raises(MalformedMessageError, match=reason):
        split_forest(forest)


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=80))
def test_arbitrary_bytes_either_parse_consistently_or_are_refused(data: bytes) -> None:
    try:
        top = split_forest(data)
    except MalformedMessageError:
        return
    # Accepted: the children's entries and their forests add up to the whole.
    assert sum(8 + len(below) for _, below in top) == len(data)
    names = [name for name, _, _ in struct.iter_unpack(">6sH", data)]
    assert len(set(names)) == len(names)

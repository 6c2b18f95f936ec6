from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from meshrouter.codec import pack
from meshrouter.errors import MalformedMessageError
from meshrouter.names import PeerName
from tests.conftest import assert_merge_laws, assert_reencodes, decoded_or_none, merged
from tests.gossip.counter_set import CounterSet, CounterSetChannel

names = st.text(min_size=0, max_size=8)
values = st.integers(min_value=-(1 << 63), max_value=(1 << 64) - 1)
counter_sets = st.dictionaries(names, values, max_size=12).map(CounterSet)


@settings(deadline=None)
@given(counter_sets, counter_sets, counter_sets)
def test_merge_keeps_the_crdt_laws(a: CounterSet, b: CounterSet, c: CounterSet) -> None:
    assert_merge_laws(a, b, c)


@settings(deadline=None)
@given(counter_sets, counter_sets)
def test_merge_is_the_pointwise_maximum(a: CounterSet, b: CounterSet) -> None:
    """Oracle written here: every name of either side, at the larger value."""
    expected = {name: max(v for v in (a.get(name), b.get(name)) if v is not None)
                for name in {*a, *b}}
    assert merged(a, b).as_dict() == expected


@settings(deadline=None)
@given(counter_sets, counter_sets)
def test_delta_is_exactly_what_rose_and_other_is_untouched(a: CounterSet, b: CounterSet) -> None:
    before = a.copy()
    b_before = b.copy()
    delta = a.merge(b)
    assert b == b_before
    if delta is None:
        assert a == before
        return
    # Applying only the delta to the old state gives the new state...
    replay = before.copy()
    assert replay.merge(delta) == delta
    assert replay == a
    # ...and every delta entry is new to the old state and comes from b.
    for name in delta:
        old, new = before.get(name), delta.get(name)
        assert new is not None and new == b.get(name)
        assert old is None or new > old


@settings(deadline=None)
@given(counter_sets)
def test_decode_inverts_encode(a: CounterSet) -> None:
    assert CounterSet.decode(a.encode()) == a


@settings(deadline=None)
@given(counter_sets)
def test_equal_sets_encode_to_equal_bytes(a: CounterSet) -> None:
    reordered = CounterSet(dict(reversed(list(a.as_dict().items()))))
    assert reordered.encode() == a.encode()


# Maps that are nearly counter sets, so that fuzzing often decodes something.
near_counter_sets = st.dictionaries(
    st.text(max_size=3) | st.integers(0, 3) | st.just("x" * 257),
    st.integers(-(2**63), 2**64 - 1) | st.booleans() | st.floats(allow_nan=False) | st.none(),
    max_size=4,
).map(pack)


@settings(deadline=None)
@given(st.binary(max_size=64) | near_counter_sets)
def test_decode_of_arbitrary_bytes_refuses_or_reencodes(payload: bytes) -> None:
    decoded = decoded_or_none(CounterSet.decode, payload)
    if decoded is not None:
        assert_reencodes(CounterSet.decode, CounterSet.encode, decoded)


@pytest.mark.parametrize(
    "payload",
    [pack([1, 2]), pack({1: 2}), pack({"a": "b"}), pack({"a": True}), pack({"x" * 300: 1})],
)
def test_decode_refuses_wrong_shapes(payload: bytes) -> None:
    with pytest.raises(MalformedMessageError):
        CounterSet.decode(payload)


def test_copy_is_independent() -> None:
    a = CounterSet({"x": 1})
    b = a.copy()
    b.set("x", 5)
    assert a.get("x") == 1


@settings(deadline=None)
@given(counter_sets, counter_sets)
def test_channel_digest_predicates_agree_with_merge(a: CounterSet, b: CounterSet) -> None:
    ours = CounterSetChannel(a.as_dict())
    theirs = CounterSetChannel(b.as_dict())
    missing = ours.newer_than(theirs.digest())
    # What we send is exactly what merging into them would add.
    assert missing == theirs.state.copy().merge(a)
    assert ours.lacks_from(theirs.digest()) == (ours.state.copy().merge(b) is not None)


def test_channel_records_unicasts_bounded() -> None:
    channel = CounterSetChannel(unicast_log_limit=2)
    for i in range(3):
        channel.on_unicast(PeerName(9), bytes([i]))
    assert list(channel.unicasts) == [(9, b"\x01"), (9, b"\x02")]
    assert channel.full_state() is None
    channel.set("a", 1)
    assert channel.full_state() == CounterSet({"a": 1})

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from meshrouter.codec import pack
from meshrouter.errors import MalformedMessageError
from meshrouter.names import PeerName
from tests.gossip.counter_set import CounterSet, CounterSetChannel

names = st.text(min_size=0, max_size=8)
values = st.integers(min_value=-(1 << 63), max_value=(1 << 64) - 1)
counter_sets = st.dictionaries(names, values, max_size=12).map(CounterSet)


def merged(*parts: CounterSet) -> CounterSet:
    result = CounterSet()
    for part in parts:
        result.merge(part)
    return result


@settings(deadline=None)
@given(counter_sets, counter_sets)
def test_merge_is_commutative(a: CounterSet, b: CounterSet) -> None:
    assert merged(a, b) == merged(b, a)


@settings(deadline=None)
@given(counter_sets, counter_sets, counter_sets)
def test_merge_is_associative(a: CounterSet, b: CounterSet, c: CounterSet) -> None:
    left = a.copy()
    left.merge(b)
    left.merge(c)
    bc = b.copy()
    bc.merge(c)
    right = a.copy()
    right.merge(bc)
    assert left == right


@settings(deadline=None)
@given(counter_sets)
def test_merge_is_idempotent(a: CounterSet) -> None:
    b = a.copy()
    assert b.merge(a) is None
    assert b == a


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


@settings(deadline=None)
@given(st.binary(max_size=64))
def test_decode_of_arbitrary_bytes_raises_only_malformed(payload: bytes) -> None:
    try:
        CounterSet.decode(payload)
    except MalformedMessageError:
        pass


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

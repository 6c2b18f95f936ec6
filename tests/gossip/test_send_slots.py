from __future__ import annotations

import random
from collections import deque
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from meshrouter.gossip.core import GossipCore
from meshrouter.gossip.send_slots import SendSlots, Snapshot
from meshrouter.names import PeerName
from meshrouter.wire.messages import BroadcastMsg, DigestMsg, GossipMsg, UnicastMsg
from tests.gossip.counter_set import CounterSet, CounterSetChannel

LOCAL = PeerName(1)
B = PeerName(2)
C = PeerName(3)


def make_slots(**limits: int) -> SendSlots:
    options = {"unicast_limit": 8, "unknown_limit": 8, "broadcast_limit": 8}
    options.update(limits)
    return SendSlots(LOCAL, **options)


def core_with_neighbours(*peers: PeerName, **options: Any) -> tuple[GossipCore, CounterSetChannel]:
    core = GossipCore(LOCAL, rng=random.Random(0), **options)
    channel = CounterSetChannel()
    core.add_channel("c", channel)
    for peer in peers:
        core.neighbour_up(peer)
        while core.pop_outgoing(peer) is not None:  # drop the greeting digests
            pass
    return core, channel


class SpyData:
    """A CounterSet wrapper counting encode and copy calls."""

    encodes = 0
    copies = 0

    def __init__(self, inner: CounterSet) -> None:
        self.inner = inner

    def encode(self) -> bytes:
        SpyData.encodes += 1
        return self.inner.encode()

    def merge(self, other: Any) -> Any:
        return self.inner.merge(other.inner)

    def copy(self) -> SpyData:
        SpyData.copies += 1
        return SpyData(self.inner.copy())


def test_three_broadcasts_while_blocked_pop_as_one_merged_message() -> None:
    core, _ = core_with_neighbours(B)
    updates = [CounterSet({"x": 1}), CounterSet({"y": 2}), CounterSet({"x": 3})]
    originals = [u.copy() for u in updates]
    for update in updates:  # the sender task is blocked: nobody pops
        core.originate_broadcast("c", update)
    msg = core.pop_outgoing(B)
    assert isinstance(msg, BroadcastMsg)
    assert msg.src == LOCAL and msg.channel == "c"
    assert CounterSet.decode(msg.payload) == CounterSet({"x": 3, "y": 2})
    assert core.pop_outgoing(B) is None
    assert updates == originals  # the caller's objects were never mutated
    stats = core.stats.channels["c"]
    assert stats.coalesced == {"broadcast": 2}
    assert stats.sent_messages == {"broadcast": 1, "digest": 1}  # + the greeting


def test_three_gossips_while_blocked_pop_as_one_merged_message() -> None:
    core, _ = core_with_neighbours(B, fanout=1)
    for update in ({"x": 1}, {"y": 2}, {"x": 3}):
        core.originate_gossip("c", CounterSet(update))
    msg = core.pop_outgoing(B)
    assert isinstance(msg, GossipMsg) and msg.src == LOCAL
    assert CounterSet.decode(msg.payload) == CounterSet({"x": 3, "y": 2})
    assert core.pop_outgoing(B) is None


def test_shared_update_is_copied_once_and_encoded_once_across_neighbours() -> None:
    core, _ = core_with_neighbours(B, C, PeerName(4), PeerName(5))
    SpyData.encodes = SpyData.copies = 0
    core.originate_broadcast("c", SpyData(CounterSet({"x": 1})))
    payloads = {peer: core.pop_outgoing(peer) for peer in (B, C, PeerName(4), PeerName(5))}
    assert len({m.payload for m in payloads.values() if isinstance(m, BroadcastMsg)}) == 1
    assert SpyData.copies == 1
    assert SpyData.encodes == 1


def test_coalescing_in_one_slot_does_not_leak_into_another() -> None:
    core, _ = core_with_neighbours(B, C)
    core.originate_broadcast("c", CounterSet({"x": 1}))
    first_c = core.pop_outgoing(C)  # C's sender is fast, B's is blocked
    core.originate_broadcast("c", CounterSet({"y": 2}))
    second_c = core.pop_outgoing(C)
    merged_b = core.pop_outgoing(B)
    assert isinstance(first_c, BroadcastMsg) and isinstance(second_c, BroadcastMsg)
    assert isinstance(merged_b, BroadcastMsg)
    assert CounterSet.decode(first_c.payload) == CounterSet({"x": 1})
    assert CounterSet.decode(second_c.payload) == CounterSet({"y": 2})
    assert CounterSet.decode(merged_b.payload) == CounterSet({"x": 1, "y": 2})


def test_relayed_broadcast_keeps_original_bytes_until_merged() -> None:
    slots = make_slots()
    raw = CounterSet({"a": 1}).encode()
    slots.queue_broadcast("c", C, Snapshot(raw=raw, decode=CounterSet.decode))
    assert slots.pop() == BroadcastMsg("c", C, raw)
    slots.queue_broadcast("c", C, Snapshot(raw=raw, decode=CounterSet.decode))
    result = slots.queue_broadcast("c", C, Snapshot(data=CounterSet({"b": 2})))
    assert result == "coalesced"
    msg = slots.pop()
    assert isinstance(msg, BroadcastMsg)
    assert CounterSet.decode(msg.payload) == CounterSet({"a": 1, "b": 2})


def test_broadcast_slots_are_per_origin() -> None:
    slots = make_slots()
    slots.queue_broadcast("c", B, Snapshot(data=CounterSet({"b": 1})))
    slots.queue_broadcast("c", C, Snapshot(data=CounterSet({"c": 1})))
    assert slots.queue_broadcast("c", B, Snapshot(data=CounterSet({"b": 2}))) == "coalesced"
    first, second = slots.pop(), slots.pop()
    assert isinstance(first, BroadcastMsg) and isinstance(second, BroadcastMsg)
    assert (first.src, CounterSet.decode(first.payload)) == (B, CounterSet({"b": 2}))
    assert (second.src, CounterSet.decode(second.payload)) == (C, CounterSet({"c": 1}))
    assert slots.pop() is None


def test_unicast_queue_is_bounded_and_drops_oldest() -> None:
    core, _ = core_with_neighbours(B, unicast_queue_limit=3)
    for i in range(5):
        assert core.send_unicast("c", B, bytes([i]))
    popped = []
    while (msg := core.pop_outgoing(B)) is not None:
        popped.append(msg)
    assert popped == [UnicastMsg("c", LOCAL, B, bytes([i])) for i in (2, 3, 4)]
    assert core.stats.channels["c"].dropped == {"unicast_queue_full": 2}


def test_pop_order_is_unicast_broadcast_gossip_digest() -> None:
    slots = make_slots()
    slots.queue_digest("c", b"d", reply=False)
    slots.queue_unknown_gossip(GossipMsg("u", LOCAL, b"ug"))
    slots.queue_gossip("c", Snapshot(data=CounterSet({"g": 1})))
    slots.queue_unknown_broadcast(BroadcastMsg("u", C, b"ub"))
    slots.queue_broadcast("c", C, Snapshot(data=CounterSet({"b": 1})))
    slots.queue_unicast(UnicastMsg("c", LOCAL, B, b"u"))
    assert len(slots) == 6
    order = []
    while (msg := slots.pop()) is not None:
        order.append((type(msg).__name__, msg.channel))
    assert order == [
        ("UnicastMsg", "c"),
        ("BroadcastMsg", "c"),
        ("BroadcastMsg", "u"),
        ("GossipMsg", "c"),
        ("GossipMsg", "u"),
        ("DigestMsg", "c"),
    ]
    assert len(slots) == 0


def test_latest_digest_replaces_but_a_reply_request_is_kept() -> None:
    slots = make_slots()
    assert slots.queue_digest("c", b"old", reply=False) == "queued"
    assert slots.queue_digest("c", b"new", reply=True) == "coalesced"
    assert slots.pop() == DigestMsg("c", LOCAL, b"new", False)
    slots.queue_digest("c", b"one", reply=True)
    slots.queue_digest("c", b"two", reply=True)
    assert slots.pop() == DigestMsg("c", LOCAL, b"two", True)


def test_unknown_channel_queues_are_bounded() -> None:
    slots = make_slots(unknown_limit=2)
    dropped = [slots.queue_unknown_broadcast(BroadcastMsg("u", C, bytes([i]))) for i in range(3)]
    assert dropped == [None, None, BroadcastMsg("u", C, b"\x00")]
    dropped_g = [slots.queue_unknown_gossip(GossipMsg("u", LOCAL, bytes([i]))) for i in range(3)]
    assert dropped_g == [None, None, GossipMsg("u", LOCAL, b"\x00")]
    assert len(slots) == 4


def fifos_held(slots: SendSlots) -> int:
    """How many FIFO objects the slots hold right now (read from its attributes)."""
    return sum(isinstance(value, deque) for value in vars(slots).values())


def test_idle_slots_hold_no_fifo_and_a_drained_fifo_is_dropped() -> None:
    # Memory at scale: one SendSlots per neighbour, FIFOs created on first use.
    slots = make_slots()
    assert fifos_held(slots) == 0
    slots.queue_unicast(UnicastMsg("c", LOCAL, B, b"1"))
    slots.queue_unicast(UnicastMsg("c", LOCAL, B, b"2"))
    slots.queue_unknown_broadcast(BroadcastMsg("u", C, b"ub"))
    slots.queue_unknown_gossip(GossipMsg("u", LOCAL, b"ug"))
    assert fifos_held(slots) == 3
    assert slots.pop() == UnicastMsg("c", LOCAL, B, b"1")
    # Refilled before it drained: nothing lost, order kept.
    slots.queue_unicast(UnicastMsg("c", LOCAL, B, b"3"))
    popped = []
    while (msg := slots.pop()) is not None:
        popped.append(msg)
    assert popped == [
        UnicastMsg("c", LOCAL, B, b"2"),
        UnicastMsg("c", LOCAL, B, b"3"),
        BroadcastMsg("u", C, b"ub"),
        GossipMsg("u", LOCAL, b"ug"),
    ]
    assert fifos_held(slots) == 0 and len(slots) == 0 and list(slots.pending()) == []


def test_full_broadcast_slots_fold_into_the_gossip_slot() -> None:
    core, _ = core_with_neighbours(B, broadcast_slot_limit=1)
    relay_from = PeerName(4)
    core.neighbour_up(relay_from)
    while core.pop_outgoing(relay_from) is not None:
        pass

    class Star:
        def next_hop_any(self, dst: PeerName) -> PeerName | None:
            return dst

        def broadcast_next_hops(self, origin: PeerName) -> list[PeerName]:
            return [B, relay_from]

    core.set_routes(Star())
    core.originate_broadcast("c", CounterSet({"mine": 1}))
    for origin, value in ((PeerName(7), 1), (PeerName(8), 2)):
        payload = CounterSet({f"o{origin}": value}).encode()
        core.handle(relay_from, BroadcastMsg("c", origin, payload), random.Random(0))
    first, second = core.pop_outgoing(B), core.pop_outgoing(B)
    assert isinstance(first, BroadcastMsg) and first.src == LOCAL
    assert isinstance(second, GossipMsg)
    assert CounterSet.decode(second.payload) == CounterSet({"o7": 1, "o8": 2})
    assert core.pop_outgoing(B) is None
    assert core.stats.channels["c"].coalesced["broadcast_into_gossip"] == 2


@settings(deadline=None)
@given(st.lists(st.dictionaries(st.sampled_from("abcde"), st.integers(0, 9)), min_size=1))
def test_any_sequence_of_queued_updates_pops_as_their_merge(updates: list[dict[str, int]]) -> None:
    slots = make_slots()
    expected = CounterSet()
    for update in updates:
        slots.queue_gossip("c", Snapshot(data=CounterSet(update)))
        expected.merge(CounterSet(update))
    msg = slots.pop()
    assert isinstance(msg, GossipMsg)
    assert CounterSet.decode(msg.payload) == expected
    assert slots.pop() is None

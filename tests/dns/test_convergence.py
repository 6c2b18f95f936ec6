"""Whole-protocol property: random edits, lost/duplicated/reordered deltas,
tombstone collection and restarts without state, then anti-entropy: every core
answers exactly what each owner publishes (its truth), whatever happened."""

from __future__ import annotations

import random

from hypothesis import given, settings
from hypothesis import strategies as st

from meshrouter.dns.core import DnsCore
from meshrouter.dns.records import DnsRecords, RecordKey
from meshrouter.names import PeerName

OWNERS = [PeerName(1), PeerName(2), PeerName(3)]
KEYS = [RecordKey(f"n{i}.mesh.local.", 0x0A200000 + i, "") for i in range(3)]

ops = st.lists(
    st.tuples(
        st.sampled_from(["add", "remove", "collect", "deliver", "drop", "restart", "dup"]),
        st.integers(0, 2), st.integers(0, 2)),
    min_size=8,
    max_size=60,
)


def truth(core: DnsCore) -> set[RecordKey]:
    return set(core.mine())


def live(core: DnsCore, owner: PeerName) -> set[RecordKey]:
    held = core.records.owners.get(owner)
    return set() if held is None else {k for k, _ in held.live()}


def exchange(cores: dict[PeerName, DnsCore]) -> None:
    """Full-state anti-entropy until nothing changes (owners' re-assertions included)."""
    for _ in range(20):
        changed = False
        for a in OWNERS:
            for b in OWNERS:
                if a != b and cores[b].receive(cores[a].records.copy()) is not None:
                    changed = True
        for core in cores.values():
            core.take_broadcast()  # their content is in their records already
        if not changed:
            return
    raise AssertionError("anti-entropy did not settle")


@settings(deadline=None, max_examples=200)
@given(ops, st.integers(0, 1000))
def test_any_history_converges_to_each_owners_truth(history: list[tuple[str, int, int]],
                                                   seed: int) -> None:
    rng = random.Random(seed)
    cores = {o: DnsCore(o, "mesh.local.", tombstone_ttl=10.0) for o in OWNERS}
    in_flight: list[tuple[PeerName, DnsRecords]] = []
    now = 0.0
    for op, who, key in history:
        now += 6.0
        owner = OWNERS[who]
        core = cores[owner]
        if op == "add":
            core.add(KEYS[key], now)
        elif op == "remove":
            core.remove(lambda k, key=key: k == KEYS[key], now)
        elif op == "collect":
            for other in OWNERS:
                if cores[other].collect(now):
                    out = cores[other].take_broadcast()
                    assert out is not None
                    in_flight += [(o, out.copy()) for o in OWNERS if o != other]
        elif op == "restart":
            cores[owner] = DnsCore(owner, "mesh.local.", tombstone_ttl=10.0)
        out = cores[owner].take_broadcast()
        if out is not None:
            in_flight += [(o, out.copy()) for o in OWNERS if o != owner]
        if op in ("deliver", "drop", "dup") and in_flight:
            target, data = in_flight.pop(rng.randrange(len(in_flight)))
            if op != "drop":
                cores[target].receive(data)
                if op == "dup":
                    cores[target].receive(data)
                reply = cores[target].take_broadcast()
                if reply is not None:
                    in_flight += [(o, reply.copy()) for o in OWNERS if o != target]
        # At every step, an owner's own records say exactly what it publishes.
        for core in cores.values():
            assert live(core, core.local) == truth(core), (op, core.local)
    exchange(cores)
    for owner in OWNERS:
        for core in cores.values():
            assert live(core, owner) == truth(cores[owner]), (owner, core.local)
    states = [cores[o].records for o in OWNERS]
    assert all(s == states[0] for s in states)

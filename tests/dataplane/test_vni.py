"""VNI layout: IDs are deterministic, unique, order-independent; encode/decode round-trip."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from meshrouter.dataplane.core import vni
from meshrouter.names import PeerName

names = st.lists(st.integers(0, (1 << 48) - 1).map(PeerName), max_size=60, unique=True)


@settings(deadline=None)  # the VM is shared: wall time is not ours
@given(names, st.randoms(use_true_random=False))
def test_assignment_is_unique_and_order_independent(peers: list[PeerName], rnd: object) -> None:
    ids = vni.assign_ids(peers)
    shuffled = list(peers)
    rnd.shuffle(shuffled)  # type: ignore[attr-defined]
    assert vni.assign_ids(shuffled) == ids
    assert len(set(ids.values())) == len(peers)
    assert all(0 < i < vni.ID_SPACE for i in ids.values())


def test_collisions_resolve_by_hash_then_name(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(vni, "preferred_id", lambda name: vni.ID_SPACE - 1)
    ids = vni.assign_ids([PeerName(9), PeerName(3), PeerName(5)])
    # all want the last slot: the smallest name keeps it, the others wrap to 1, 2
    assert ids == {PeerName(3): vni.ID_SPACE - 1, PeerName(5): 1, PeerName(9): 2}


def test_more_than_4096_peers_get_distinct_ids() -> None:
    ids = vni.assign_ids(PeerName(n) for n in range(10_000))
    assert len(set(ids.values())) == 10_000


@settings(deadline=None)  # the VM is shared: wall time is not ours
@given(st.integers(1, vni.ID_SPACE - 1), st.booleans())
def test_vni_round_trip(peer_id: int, broadcast: bool) -> None:
    value = vni.broadcast_vni(peer_id) if broadcast else vni.unicast_vni(peer_id)
    assert 0 < value <= vni.VNI_MAX
    assert vni.decode_vni(value) == (broadcast, peer_id)


@pytest.mark.parametrize("bad", [0, vni.BROADCAST_BIT, 1 << 24])
def test_foreign_vnis_are_refused(bad: int) -> None:
    with pytest.raises(ValueError):
        vni.decode_vni(bad)


def test_ids_out_of_range_are_refused() -> None:
    with pytest.raises(ValueError):
        vni.unicast_vni(0)
    with pytest.raises(ValueError):
        vni.broadcast_vni(vni.ID_SPACE)

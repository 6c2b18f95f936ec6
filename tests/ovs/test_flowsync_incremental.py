"""The render cache derives a table from the previous one when most flow objects are
the same, and the delta then looks only at the keys that changed: the result must be
exactly what a cold build and a full comparison give."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from meshrouter.dataplane.core.flow import Flow, Match, Output
from meshrouter.dataplane.core.pipeline import COOKIE_MASK, COOKIE_PREFIX, Category, cookie
from meshrouter.dataplane.openflow import flowmod, wire
from meshrouter.dataplane.ovs import flowsync
from meshrouter.errors import InvalidRequestError

OURS = f"cookie=0x{COOKIE_PREFIX:x}/0x{COOKIE_MASK:x}"


def make(mac: int, port: int) -> Flow:
    return Flow(20, 100, Match(dl_dst=f"02:00:00:00:00:{mac:02x}"), (Output(port),),
                cookie(Category.ENDPOINT, mac))


POOL = [make(mac, port) for mac in range(12) for port in (1000, 1001)]
"""Flow objects the steps draw from: reusing them is what makes a table derived."""
TWINS = [Flow(f.table, f.priority, f.match, f.actions, f.cookie) for f in POOL]
"""Equal to ``POOL`` but other objects: one may stay while its twin goes."""

steps = st.lists(
    st.lists(st.tuples(st.integers(0, len(POOL) - 1), st.booleans()), max_size=16),
    min_size=1, max_size=6)


def cold(flows: list[Flow]) -> dict[str, str]:
    """The oracle: each key's line, straight from the flows (no cache)."""
    return {f.match_text(): f.to_ofctl() for f in flows}


def pick(base: list[Flow], rows: list[tuple[int, bool]]) -> list[Flow] | None:
    """``base`` + the step's flows (pool objects or their twins); None if two of them
    differ on one key."""
    flows: list[Flow] = []
    seen = cold(base)
    for i, fresh in rows:
        f = TWINS[i] if fresh else POOL[i]
        if seen.setdefault(f.match_text(), f.to_ofctl()) != f.to_ofctl():
            return None
        flows.append(f)
    return base + flows


@settings(max_examples=150, deadline=None)
@given(steps=steps, keep=st.integers(0, 12))
def test_derived_tables_and_their_deltas_equal_cold_builds(
    steps: list[list[tuple[int, bool]]], keep: int
) -> None:
    cache = flowsync.RenderCache()
    base = list(POOL[:keep * 2:2])  # a common core, so most steps derive
    installed: flowsync.DesiredTable | None = None
    for rows in steps:
        flows = pick(base, rows)
        if flows is None:
            continue
        table = cache.table(flows)
        assert dict(table) == cold(flows)
        assert set(table.entries) == set(table)
        for key, entry in table.entries.items():
            assert entry[2] == table[key]
            assert flowmod.decode(wire.split(wire.parse_bundle_add(
                wire.split(entry[3] or b""))[2])).flow().to_ofctl() == table[key]
        if installed is not None:
            adds, dels = flowsync.changes(installed, table)
            full_adds = {k for k, v in table.items() if installed.get(k) != v}
            assert (set(adds), set(dels)) == (full_adds, installed.keys() - table.keys())
            messages, lines = flowsync.native_messages(installed, table)
            assert len(messages) == len(adds) + len(dels)
            assert sorted(lines) == sorted(table[k] for k in full_adds)
        installed = table


def test_a_one_flow_change_is_derived_and_looks_at_one_key() -> None:
    cache = flowsync.RenderCache()
    flows = [make(mac, 1000) for mac in range(10)]
    first = cache.table(flows)
    changed = [*flows[:9], make(9, 1001)]
    second = cache.table(changed)
    assert second.base is first and second.changed == {changed[9].match_text()}
    assert cache.hits == 9
    assert flowsync.changes(first, second) == ([changed[9].match_text()], [])
    assert flowsync.delta(first, second, OURS).added == 1
    # compared with a table that is not its base: every key looked at, same answer
    other = flowsync.RenderCache().table(flows)
    assert flowsync.changes(other, second) == ([changed[9].match_text()], [])


def test_an_equal_duplicate_keeps_its_key_when_one_copy_goes() -> None:
    cache = flowsync.RenderCache()
    a = make(1, 1000)
    twin = Flow(a.table, a.priority, a.match, a.actions, a.cookie)
    others = [make(mac, 1000) for mac in range(2, 8)]
    cache.table([a, twin, *others])
    table = cache.table([twin, *others])
    assert a.match_text() in table and not table.changed


def test_a_conflict_is_refused_in_a_derived_table_and_the_cache_still_works() -> None:
    cache = flowsync.RenderCache()
    flows = [make(mac, 1000) for mac in range(8)]
    first = cache.table(flows)
    with pytest.raises(InvalidRequestError, match="same match"):
        cache.table([*flows, make(0, 1001)])
    assert dict(first) == cold(flows)
    again = cache.table([*flows[1:], make(0, 1001)])
    assert dict(again) == cold([*flows[1:], make(0, 1001)])

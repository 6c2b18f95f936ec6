"""Table deltas: applying diff(A, B) to A gives B exactly; no change, no delta."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from meshrouter.dataplane.core.delta import apply, diff, index
from meshrouter.dataplane.core.flow import Flow, Match, Output

flows = st.builds(
    lambda table, priority, port, out, c: Flow(table, priority, Match(in_port=port),
                                               (Output(out),) if out else (), c),
    st.integers(0, 2), st.sampled_from([0, 100]), st.integers(1, 4), st.integers(0, 3),
    st.integers(0, 2))


@settings(deadline=None)
@given(st.lists(flows, max_size=12), st.lists(flows, max_size=12))
def test_apply_of_diff_reaches_the_target(a: list[Flow], b: list[Flow]) -> None:
    table = index(a)
    delta = diff(a, b)
    apply(table, delta)
    assert table == index(b)
    assert {f.key() for f in delta.deletes}.isdisjoint({f.key() for f in b})
    assert all(index(a).get(f.key()) != f for f in delta.adds)  # only real changes
    assert diff(b, b).is_empty()

"""Theory of operation: the difference between two flow tables.

A switch identifies a flow by (table, priority, match).  ``diff(old, new)``
returns the flows of ``new`` whose key is absent from ``old`` or whose
actions/cookie changed (an OpenFlow ``add`` of an existing key replaces it,
so a change is an add) and the keys of ``old`` that ``new`` lacks (strict
deletes).  Applying the delta to ``old`` gives ``new`` exactly; one endpoint
change is a delta of a few flows, whatever the size of the table.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from meshrouter.dataplane.core.flow import Flow, Match, sort_key

FlowKey = tuple[int, int, Match]


@dataclass(frozen=True, slots=True)
class FlowDelta:
    """Flows to add (or replace) and flows to delete (by key)."""

    adds: tuple[Flow, ...]
    deletes: tuple[Flow, ...]

    def __len__(self) -> int:
        return len(self.adds) + len(self.deletes)

    def is_empty(self) -> bool:
        return not self.adds and not self.deletes


def index(flows: Iterable[Flow]) -> dict[FlowKey, Flow]:
    """Flows by key; a later flow with an existing key replaces the earlier one."""
    return {flow.key(): flow for flow in flows}


def diff(old: Mapping[FlowKey, Flow] | Iterable[Flow],
         new: Mapping[FlowKey, Flow] | Iterable[Flow]) -> FlowDelta:
    """The delta that turns table ``old`` into table ``new``."""
    before = old if isinstance(old, Mapping) else index(old)
    after = new if isinstance(new, Mapping) else index(new)
    adds = []
    for key, flow in after.items():
        prior = before.get(key)
        if prior is not flow and prior != flow:  # identity first: memoised flows are shared
            adds.append(flow)
    deletes = [flow for key, flow in before.items() if key not in after]
    adds.sort(key=sort_key)
    deletes.sort(key=sort_key)
    return FlowDelta(tuple(adds), tuple(deletes))


def apply(table: dict[FlowKey, Flow], delta: FlowDelta) -> None:
    """Apply ``delta`` to ``table`` in place (deletes first, as the switch does)."""
    for flow in delta.deletes:
        table.pop(flow.key(), None)
    for flow in delta.adds:
        table[flow.key()] = flow

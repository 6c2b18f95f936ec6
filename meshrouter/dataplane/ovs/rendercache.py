"""Theory of operation: each flow object rendered once, as text and as OpenFlow.

The OVS shell needs two renderings of every flow of a table: the
``ovs-ofctl`` line (``to_ofctl``, and ``match_text`` as the flow's identity)
and the ``OFPT_BUNDLE_ADD_MESSAGE`` holding its ``OFPFC_ADD``
(``meshrouter.dataplane.openflow``) for the native channel.  Both cost tens of
microseconds per flow, so a 10,000-flow table costs tens to hundreds of
milliseconds to render -- far more than a one-endpoint change may take.

``RenderCache`` therefore remembers the renderings of the flow *objects* of
the previous table by identity (``table.py`` memoises flows, so an unchanged
flow is the same object from one build to the next), and derives the next
table from the previous one when most objects are the same: only objects that
appeared or disappeared are looked at, and the derived ``DesiredTable``
records which keys changed, so the delta that follows looks at those alone.
Pure: no I/O, no clock; the shell calls it in a worker thread.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Protocol

from meshrouter.dataplane.core.flow import Flow
from meshrouter.dataplane.openflow import flowmod, stats, wire
from meshrouter.errors import InvalidRequestError

log = logging.getLogger(__name__)

MAX_FLOW_LINE = 8192
XID_FLOW = 0x6D720010
"""The xid of every flow_mod we send (and of its bundle wrapper): constant, so a
flow's messages are cached bytes; an error names the flow by its echoed start."""


class OfctlFlow(Protocol):
    """What the shell needs of a flow (``meshrouter.dataplane.core.flow.Flow`` has it)."""

    def match_text(self) -> str: ...

    def to_ofctl(self) -> str: ...


Entry = tuple[OfctlFlow, str, str, "bytes | None", "tuple[bytes, bytes] | None"]
"""(flow, match_text, line, bundled OFPFC_ADD message or None, the (key, state) a
flow dump will show of it or None) of one rendered flow."""


class DesiredTable(dict[str, str]):
    """``{match_text: line}`` as before, plus each key's rendered entry (the flow
    object and its cached OpenFlow add message) for the native channel, and --
    when it was derived from the previous table -- which keys changed since."""

    __slots__ = ("base", "changed", "encoded", "entries")

    def __init__(self) -> None:
        super().__init__()
        self.entries: dict[str, Entry] = {}
        self.encoded = True
        """Whether every flow has an OpenFlow encoding (structured ``Flow`` objects)."""
        self.base: DesiredTable | None = None
        """The table this one was derived from (``changed`` is relative to it)."""
        self.changed: set[str] = set()

    def derive(self) -> DesiredTable:
        """A copy to change, remembering this table as its base (and forgetting this
        table's own base, so a chain of applies keeps two tables alive, not all)."""
        table = DesiredTable()
        dict.update(table, self)
        table.entries = dict(self.entries)
        table.encoded = self.encoded
        table.base = self
        self.base = None
        return table

    def changed_since(self, other: dict[str, str]) -> Iterable[str]:
        """Keys whose line may differ between ``other`` and this table: the recorded
        changes when ``other`` is the base, else every key of both."""
        if other is self.base:
            return self.changed
        return self.keys() | other.keys()


def encode_add(flow: Flow) -> bytes:
    """The ``OFPT_BUNDLE_ADD_MESSAGE`` holding ``flow``'s ``OFPFC_ADD``."""
    return wire.bundle_add(XID_FLOW, flowmod.add(XID_FLOW, flow))


class RenderCache:
    """Renderings of the flow *objects* of the previous apply, by identity.

    Rendering 10,000 flows costs tens of milliseconds of Python, more than the
    whole budget of a one-endpoint delta; a builder that reuses unchanged ``Flow``
    objects (``table.py`` memoises them) then pays only for the new ones.  Keyed
    by ``id()`` with the object kept alive in the entry, so an id present in both
    the previous and the new list is the same object.  Value equality is not
    used: hashing and comparing dataclasses costs nearly as much as rendering.

    When most objects are the same as last time, the new table is *derived*
    from the previous one: only the objects that appeared or disappeared are
    looked at (set operations on their ids), and the table records which keys
    changed, so the delta that follows is computed from those keys alone.  A
    one-endpoint change to a 10,000-flow table thus costs a few milliseconds of
    Python instead of tens.  ``_counts`` keeps how many objects hold each key,
    because two equal flows may be two objects and one of them may go.
    """

    def __init__(self, *, encode: bool = True) -> None:
        self._entries: dict[int, Entry] = {}
        self._counts: dict[str, int] = {}
        self._last: DesiredTable | None = None
        self.hits = 0
        self.encode = encode

    def _render(self, flow: OfctlFlow) -> Entry:
        line = flow.to_ofctl()
        if "\n" in line or "\r" in line or len(line) > MAX_FLOW_LINE:
            raise InvalidRequestError(f"flow line refused (newline or over {MAX_FLOW_LINE} chars)")
        encoded = dumped = None
        if self.encode and isinstance(flow, Flow):
            try:
                encoded = encode_add(flow)
                dumped = stats.flow_of_add(encoded)
            except ValueError as exc:  # over 64 KiB, or a value the codec refuses
                log.warning("flow %s has no OpenFlow encoding: %s", flow.match_text(), exc)
                encoded = None
        return (flow, flow.match_text(), line, encoded, dumped)

    def table(self, flows: Iterable[OfctlFlow]) -> DesiredTable:
        """``{match_text: line}`` of ``flows``; refuses lines that could smuggle a
        second flow_mod and two different flows with the same match."""
        seq = flows if isinstance(flows, list | tuple) else list(flows)
        by_id = dict(zip(map(id, seq), seq, strict=True))
        old = self._entries
        last = self._last
        if last is not None:
            gone = old.keys() - by_id.keys()
            new = by_id.keys() - old.keys()
            if len(gone) + len(new) <= len(by_id) // 2:
                return self._derive(last, by_id, gone, new)
        return self._full(by_id)

    def _full(self, by_id: dict[int, OfctlFlow]) -> DesiredTable:
        old_get = self._entries.get
        new: dict[int, Entry] = {}
        counts: dict[str, int] = {}
        table = DesiredTable()
        entries = table.entries
        put = table.setdefault
        misses = 0
        for fid, flow in by_id.items():  # a cold apply: every object looked at
            entry = old_get(fid)
            if entry is None:
                entry = self._render(flow)
                misses += 1
            new[fid] = entry
            key, line = entry[1], entry[2]
            previous = put(key, line)
            if previous is not line and previous != line:
                raise InvalidRequestError(f"two different flows with the same match: {key}")
            if key not in counts:
                entries[key] = entry
            counts[key] = counts.get(key, 0) + 1
        table.encoded = all(e[3] is not None for e in entries.values())
        self._commit(table, new, counts, len(new) - misses)
        return table

    def _derive(self, last: DesiredTable, by_id: dict[int, OfctlFlow], gone: set[int],
                new: set[int]) -> DesiredTable:
        table = last.derive()
        entries = dict(self._entries)
        counts = dict(self._counts)
        changed = table.changed
        for fid in gone:
            key = entries.pop(fid)[1]
            left = counts[key] - 1
            if left:
                counts[key] = left  # an equal flow (another object) still holds the key
            else:
                del counts[key], table[key], table.entries[key]
                changed.add(key)
        encoded = table.encoded
        for fid in new:
            entry = entries[fid] = self._render(by_id[fid])
            key, line = entry[1], entry[2]
            previous = table.get(key)
            if previous is None:
                table[key] = line
                table.entries[key] = entry
                counts[key] = 1
                changed.add(key)
                if entry[3] is None:
                    encoded = False
            elif previous == line:
                counts[key] += 1
            else:
                raise InvalidRequestError(f"two different flows with the same match: {key}")
        if not table.encoded:  # the flow without an encoding may be one that went
            encoded = all(e[3] is not None for e in table.entries.values())
        table.encoded = encoded
        self._commit(table, entries, counts, len(by_id) - len(new))
        return table

    def _commit(self, table: DesiredTable, entries: dict[int, Entry], counts: dict[str, int],
                hits: int) -> None:
        self._entries = entries
        self._counts = counts
        self._last = table
        self.hits = hits

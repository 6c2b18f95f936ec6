"""Theory of operation: what to send to the switch so its table equals the desired one.

Pure (no I/O), so it is tested exactly and with properties; the shell runs the
texts it produces through ``ovs-ofctl -O OpenFlow13 --bundle``.

* A flow's identity is its ``match_text()`` (table, priority, match: what OpenFlow
  uses for a strict delete or modify); its full line is ``to_ofctl()``.
* ``installed`` is what we believe the switch holds of *our* flows, or ``None``
  when we do not know (first apply, after an OVS restart or a failed command).
  Then the whole table goes with ``--bundle replace-flows``: one atomic swap, and
  OVS itself diffs against what is there, so unchanged flows keep their counters
  and datapath caches.  Flows of other owners (another cookie) found in the switch
  are put into the replace file unchanged, so the swap never touches them.
* Otherwise only the difference goes, as one atomic bundle of ``add`` (new or
  changed line) and ``delete_strict`` restricted to our cookie, ordered so that
  no packet sees a half-applied change.  One endpoint change is a few lines
  instead of a 10,000-flow replace (which costs ~95 ms however small the change:
  ovs-lab/NOTES.md section 5).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Protocol

from meshrouter.errors import InvalidRequestError

_TUN_DST = re.compile(r"set_field:(\d{1,3}(?:\.\d{1,3}){3})->tun_dst")
_COOKIE = re.compile(r"cookie=(0x[0-9a-fA-F]+)")
MAX_FLOW_LINE = 8192


class OfctlFlow(Protocol):
    """What the shell needs of a flow (``meshrouter.dataplane.core.flow.Flow`` has it)."""

    def match_text(self) -> str: ...

    def to_ofctl(self) -> str: ...


@dataclass(frozen=True, slots=True)
class Delta:
    """A bundle file (``add``/``delete_strict`` lines) and its size."""

    text: str
    added: int
    removed: int
    add_lines: list[str]

    @property
    def empty(self) -> bool:
        return self.added == 0 and self.removed == 0


class RenderCache:
    """Renderings of the flow *objects* of the previous apply, by identity.

    Rendering 10,000 flows costs tens of milliseconds of Python, more than the
    whole budget of a one-endpoint delta; a builder that reuses unchanged ``Flow``
    objects (or a caller passing the same list) then pays only for the new ones.
    Keyed by ``id()`` with the object kept alive in the entry, and checked with
    ``is``, so a recycled id can never return another flow's text.  Value
    equality is not used: hashing and comparing dataclasses costs nearly as much
    as rendering them.
    """

    def __init__(self) -> None:
        self._entries: dict[int, tuple[OfctlFlow, str, str]] = {}
        self.hits = 0

    @staticmethod
    def _render(flow: OfctlFlow) -> tuple[OfctlFlow, str, str]:
        line = flow.to_ofctl()
        if "\n" in line or "\r" in line or len(line) > MAX_FLOW_LINE:
            raise InvalidRequestError(f"flow line refused (newline or over {MAX_FLOW_LINE} chars)")
        return (flow, flow.match_text(), line)

    def table(self, flows: Iterable[OfctlFlow]) -> dict[str, str]:
        """``{match_text: line}`` of ``flows``; refuses lines that could smuggle a
        second flow_mod and two different flows with the same match."""
        old_get = self._entries.get
        new: dict[int, tuple[OfctlFlow, str, str]] = {}
        table: dict[str, str] = {}
        put = table.setdefault
        misses = 0
        for flow in flows:  # the hot loop of every apply: kept lean on purpose
            fid = id(flow)
            entry = old_get(fid)
            if entry is None or entry[0] is not flow:
                entry = self._render(flow)
                misses += 1
            new[fid] = entry
            line = entry[2]
            previous = put(entry[1], line)
            if previous is not line and previous != line:
                raise InvalidRequestError(f"two different flows with the same match: {entry[1]}")
        hits = len(new) - misses
        self._entries = new
        self.hits = hits
        return table


def desired_table(
    flows: Iterable[OfctlFlow], cache: RenderCache | None = None
) -> dict[str, str]:
    """``{match_text: line}`` (see ``RenderCache.table``)."""
    return (cache or RenderCache()).table(flows)


def full_text(desired: dict[str, str], foreign: Iterable[str] = ()) -> str:
    """The ``replace-flows`` file: other owners' flows unchanged, then ours."""
    lines = [*foreign, *sorted(desired.values())]
    return "\n".join(lines) + "\n" if lines else ""


def delta(installed: dict[str, str], desired: dict[str, str], cookie_match: str) -> Delta:
    """The bundle that turns ``installed`` into ``desired``.

    Adds come first, deletes last: a flow replaced by one with a different match
    (e.g. a priority change) is never absent in between, and a bundle is atomic
    anyway.  ``cookie_match`` (``cookie=V/M``) keeps the deletes off other owners'
    flows that happen to have the same match.
    """
    adds = sorted(f"add {line}" for key, line in desired.items() if installed.get(key) != line)
    dels = sorted(f"delete_strict {cookie_match},{key}" for key in installed
                  if key not in desired)
    lines = adds + dels
    return Delta("\n".join(lines) + "\n" if lines else "", len(adds), len(dels), adds)


def tunnel_destinations(lines: Iterable[str]) -> set[str]:
    """The underlay addresses the flows tunnel to (their ARP cache needs warming)."""
    found: set[str] = set()
    for line in lines:
        found.update(_TUN_DST.findall(line))
    return found


def foreign_lines(dump: str, prefix: int, mask: int) -> list[str]:
    """Flows in an ``ovs-ofctl dump-flows --no-stats`` output whose cookie is not ours."""
    out: list[str] = []
    for raw in dump.splitlines():
        line = raw.strip()
        if not line or line.startswith(("OFPST_", "NXST_")) or " actions=" not in line:
            continue
        found = _COOKIE.search(line)
        value = int(found.group(1), 16) if found else 0
        if value & mask != prefix & mask:
            out.append(line)
    return out

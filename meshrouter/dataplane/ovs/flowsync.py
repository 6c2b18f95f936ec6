"""Theory of operation: what to send to the switch so its table equals the desired one.

The builders of texts and messages are pure, so they are tested exactly and with
properties; ``FlowSync`` at the end is the shell that sends them (the rendering of
each flow, cached, is ``rendercache``).

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

Two channels carry these changes (``FlowSync``):

* **openflow** (preferred): the router's own OpenFlow 1.4 connection to the
  bridge (``ofchannel``), with flow_mods it encodes itself
  (``meshrouter.dataplane.openflow``).  Every flow's ``OFPFC_ADD`` message is
  encoded once, when the flow object is first rendered (in the datapath's worker
  thread), so an apply is a ``b"".join`` of cached bytes and one round trip.
  A full apply reads our flows back (one ``OFPMP_FLOW`` request restricted to
  our cookie; OVS writes them back with exactly the bytes we encode) and sends
  one bundle of what differs: strict deletes of stale flows, then adds -- after
  an OVS restart that is the whole table, after a router restart usually
  nothing, and unchanged flows keep their counters and datapath caches.  A
  delta is one bundle of adds and cookie-restricted strict deletes, exactly as
  the text above.
* **ovs-ofctl** (fallback): the texts above through ``ovs-ofctl``.  Used when
  the connection cannot be made or breaks (retried natively after
  ``NATIVE_RETRY`` seconds), and for good when the switch refuses a native
  bundle that ``ovs-ofctl`` then applies (our encoding would be at fault).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import trio

from meshrouter.dataplane.core.flow import Flow
from meshrouter.dataplane.core.pipeline import COOKIE_MASK, COOKIE_PREFIX
from meshrouter.dataplane.openflow import flowmod, stats, wire
from meshrouter.dataplane.ovs.ofchannel import OpenFlowChannel, mgmt_path
from meshrouter.dataplane.ovs.rendercache import (
    XID_FLOW,
    DesiredTable,
    Entry,
    OfctlFlow,
    RenderCache,
    encode_add,
)
from meshrouter.dataplane.ovs.tools import OvsTools
from meshrouter.errors import OpenFlowChannelError, OpenFlowError

__all__ = [
    "NATIVE_RETRY", "Delta", "DesiredTable", "FlowSync", "Pushed", "RenderCache", "changes",
    "delta", "desired_table", "encode_add", "foreign_lines", "full_messages", "full_text",
    "native_messages",
    "tunnel_destinations",
]

log = logging.getLogger(__name__)

_TUN_DST = re.compile(r"set_field:(\d{1,3}(?:\.\d{1,3}){3})->tun_dst")
_COOKIE = re.compile(r"cookie=(0x[0-9a-fA-F]+)")
_FLOW_COUNT = re.compile(r"flow_count=(\d+)")
NATIVE_RETRY = 5.0
COOKIE_MATCH = f"cookie=0x{COOKIE_PREFIX:x}/0x{COOKIE_MASK:x}"


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


def desired_table(
    flows: Iterable[OfctlFlow], cache: RenderCache | None = None
) -> DesiredTable:
    """``{match_text: line}`` (see ``RenderCache.table``)."""
    return (cache or RenderCache()).table(flows)


def full_text(desired: dict[str, str], foreign: Iterable[str] = ()) -> str:
    """The ``replace-flows`` file: other owners' flows unchanged, then ours."""
    lines = [*foreign, *sorted(desired.values())]
    return "\n".join(lines) + "\n" if lines else ""


def changes(installed: dict[str, str], desired: dict[str, str]) -> tuple[list[str], list[str]]:
    """(keys to add or replace, keys to delete) to turn ``installed`` into ``desired``:
    from the keys ``desired`` recorded as changed when ``installed`` is its base
    (a few, whatever the table size), else by comparing every key."""
    if isinstance(desired, DesiredTable):
        keys: Iterable[str] = desired.changed_since(installed)
    else:
        keys = desired.keys() | installed.keys()
    get = installed.get
    adds: list[str] = []
    dels: list[str] = []
    for key in keys:
        line = desired.get(key)
        if line is None:
            if key in installed:
                dels.append(key)
        elif get(key) != line:
            adds.append(key)
    return adds, dels


def delta(installed: dict[str, str], desired: dict[str, str], cookie_match: str) -> Delta:
    """The bundle that turns ``installed`` into ``desired``.

    Adds come first, deletes last: a flow replaced by one with a different match
    (e.g. a priority change) is never absent in between, and a bundle is atomic
    anyway.  ``cookie_match`` (``cookie=V/M``) keeps the deletes off other owners'
    flows that happen to have the same match.
    """
    adds_keys, dels_keys = changes(installed, desired)
    adds = sorted(f"add {desired[key]}" for key in adds_keys)
    dels = sorted(f"delete_strict {cookie_match},{key}" for key in dels_keys)
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


# -- the shell: pushing a desired table to the switch ---------------------------------


@dataclass(frozen=True, slots=True)
class Pushed:
    """What one push did: ``full`` or ``delta``, how many flow_mods, over which channel."""

    kind: str
    flow_mods: int
    channel: str
    new_lines: Iterable[str]


def native_messages(installed: DesiredTable | None, desired: DesiredTable
                    ) -> tuple[list[bytes], list[str]]:
    """The bundle's flow_mods and the lines they add: the delta (adds of new or
    changed lines, then cookie-restricted strict deletes), or with ``installed``
    None the blind full table (delete all of ours, add everything: what a full
    apply would cost without reading the switch first; ``full_messages`` is the
    one ``FlowSync`` sends)."""
    if installed is None:
        messages = [wire.bundle_add(XID_FLOW, flowmod.delete_cookie(
            XID_FLOW, COOKIE_PREFIX, COOKIE_MASK))]
        messages += [_encoded(entry) for entry in desired.entries.values()]
        return messages, list(desired.values())
    adds, dels = changes(installed, desired)
    messages = [_encoded(desired.entries[key]) for key in adds]
    for key in dels:
        flow = installed.entries[key][0]
        assert isinstance(flow, Flow)  # an encoded table holds Flow objects only
        messages.append(wire.bundle_add(XID_FLOW, flowmod.delete_strict(
            XID_FLOW, flow, COOKIE_MASK)))
    return messages, [desired[key] for key in adds]


def _encoded(entry: Entry) -> bytes:
    encoded = entry[3]
    assert encoded is not None  # callers check DesiredTable.encoded first
    return encoded


def full_messages(dumped: stats.Flows, desired: DesiredTable) -> tuple[list[bytes], list[str]]:
    """A full apply against the flows of ours the switch holds (``dumped``): strict
    deletes of those the table does not hold byte for byte *first*, then adds of
    the desired flows the switch lacks or holds otherwise; unchanged flows are
    left alone (their counters and datapath caches too).  Deleting first keeps the
    result right even if some flow were dumped with other bytes than we encode:
    it is then deleted and added again, never left out."""
    wanted: set[bytes] = set()
    adds: list[bytes] = []
    lines: list[str] = []
    get = dumped.get
    for entry in desired.entries.values():
        dumped_as = entry[4]
        assert dumped_as is not None  # callers check DesiredTable.encoded first
        key, state = dumped_as
        wanted.add(key)
        if get(key) != state:
            adds.append(_encoded(entry))
            lines.append(entry[2])
    deletes = [wire.bundle_add(XID_FLOW, stats.delete_strict_flow(XID_FLOW, key, state,
                                                                  COOKIE_MASK))
               for key, state in dumped.items() if key not in wanted]
    return deletes + adds, lines


class FlowSync:
    """Pushes desired tables to one bridge: natively when it can, else ovs-ofctl."""

    def __init__(self, bridge: str, *, native: bool = True, timeout: float = 10.0) -> None:
        self.bridge = bridge
        self.native = native
        self.timeout = timeout
        self._channel: OpenFlowChannel | None = None
        self._retry_at = 0.0
        self.disabled = "" if native else "native channel switched off"
        self.fallback_reason = ""
        self.last_channel = "none"

    def status(self) -> dict[str, Any]:
        """For the datapath's status: which channel carries the flows, and why not the
        native one when it does not."""
        ch = self._channel
        return {
            "channel": self.last_channel,
            "native": not self.disabled,
            "fallback_reason": self.disabled or self.fallback_reason,
            "openflow_connects": ch.connects if ch else 0,
            "openflow_bundles": ch.bundles if ch else 0,
        }

    def close(self) -> None:
        if self._channel is not None:
            self._channel.close()

    async def push(self, tools: OvsTools, desired: dict[str, str],
                   installed: dict[str, str] | None) -> Pushed:
        """Make the switch hold ``desired`` of our flows; ``installed`` is what it holds
        (None: unknown, so a full atomic replace).  Raises ``UnavailableError`` kinds."""
        if self._native_ready(desired, installed):
            assert isinstance(desired, DesiredTable)
            assert installed is None or isinstance(installed, DesiredTable)
            try:
                return await self._push_native(tools, desired, installed)
            except OpenFlowChannelError as exc:
                self.fallback_reason = str(exc)
                self._retry_at = trio.current_time() + NATIVE_RETRY
                log.warning("OpenFlow channel failed (%s); using ovs-ofctl", exc)
            except OpenFlowError as exc:
                # ovs-ofctl decides: if it applies the same table, our encoding is wrong
                pushed = await self._push_ofctl(tools, desired, None)
                self.disabled = f"the switch refused a native bundle that ovs-ofctl applied: {exc}"
                log.error("native OpenFlow switched off: %s", self.disabled)
                return pushed
        return await self._push_ofctl(tools, desired, installed)

    def _native_ready(self, desired: dict[str, str], installed: dict[str, str] | None) -> bool:
        if self.disabled or trio.current_time() < self._retry_at:
            return False
        if not isinstance(desired, DesiredTable) or not desired.encoded:
            return False
        return installed is None or (isinstance(installed, DesiredTable) and installed.encoded)

    async def count_ours(self, tools: OvsTools) -> int:
        """How many flows with our cookie prefix the switch holds (the periodic check):
        one request on the native connection, else ``ovs-ofctl dump-aggregate``."""
        if not self.disabled and trio.current_time() >= self._retry_at:
            try:
                return await self._native_channel(tools).count_flows(COOKIE_PREFIX, COOKIE_MASK)
            except OpenFlowChannelError as exc:
                self.fallback_reason = str(exc)
                self._retry_at = trio.current_time() + NATIVE_RETRY
        out = await tools.ofctl("dump-aggregate", self.bridge, COOKIE_MATCH)
        found = _FLOW_COUNT.search(out)
        return int(found.group(1)) if found else -1

    def _native_channel(self, tools: OvsTools) -> OpenFlowChannel:
        path = mgmt_path(tools.rundir, self.bridge)
        if self._channel is None or self._channel.path != path:
            self.close()
            self._channel = OpenFlowChannel(path, timeout=self.timeout)
        return self._channel

    async def _push_native(self, tools: OvsTools, desired: DesiredTable,
                           installed: DesiredTable | None) -> Pushed:
        channel = self._native_channel(tools)
        # the first exchange may meet an idle connection that died with a restarted
        # vswitchd: then once more on a fresh one (the switch discarded any half
        # bundle, and reading is harmless)
        fresh = not channel.connected
        dumped: stats.Flows = {}
        if installed is None:
            try:
                dumped = await channel.dump_flows(COOKIE_PREFIX, COOKIE_MASK)
            except OpenFlowChannelError:
                if fresh:
                    raise
                dumped = await channel.dump_flows(COOKIE_PREFIX, COOKIE_MASK)
            fresh = True  # the connection has just answered
        if installed is None:
            messages, _ = full_messages(dumped, desired)
            kind, new_lines = "full", list(desired.values())
        else:
            messages, new_lines = native_messages(installed, desired)
            kind = "delta"
        if messages:
            try:
                await channel.bundle(messages)
            except OpenFlowChannelError:
                if fresh:
                    raise
                await channel.bundle(messages)
        self.fallback_reason = ""
        self.last_channel = "openflow"
        return Pushed(kind, len(messages), "openflow", new_lines)

    async def _push_ofctl(self, tools: OvsTools, desired: dict[str, str],
                          installed: dict[str, str] | None) -> Pushed:
        new_lines: Iterable[str]
        if installed is None:
            dump = await tools.ofctl("dump-flows", self.bridge, "--no-stats")
            text = full_text(desired, foreign_lines(dump, COOKIE_PREFIX, COOKIE_MASK))
            await tools.ofctl("--bundle", "replace-flows", self.bridge, "-", stdin=text.encode())
            kind, size, new_lines = "full", len(desired), desired.values()
        else:
            change = delta(installed, desired, COOKIE_MATCH)
            if not change.empty:
                await tools.ofctl("--bundle", "add-flows", self.bridge, "-",
                                  stdin=change.text.encode())
            kind, size, new_lines = "delta", change.added + change.removed, change.add_lines
        self.last_channel = "ovs-ofctl"
        return Pushed(kind, size, "ovs-ofctl", new_lines)

"""Theory of operation: reading our flows back from the switch (multipart statistics).

Two requests, both restricted to our cookie prefix so other owners' flows are
never read: ``OFPMP_AGGREGATE`` (how many flows: the shell's periodic check) and
``OFPMP_FLOW`` (the flows themselves: what a full apply diffs against).

A dumped flow is kept as bytes -- table, priority, cookie, its padded
``ofp_match`` and its instructions -- and compared with the bytes of our own
``OFPFC_ADD`` of the desired flow (``entry_of_add``): OVS writes a flow back
with exactly the bytes we encode (``oxm`` writes fields in OVS's order; the
root+OVS test checks every kind of flow of the pipeline), so equal bytes mean
an unchanged flow and nothing needs to be sent for it.  Bytes that differ for
an equal flow only cost a needless delete and re-add, never a wrong table: a
full apply deletes stale keys *before* adding (see ``flowsync``).

A reply arrives in parts (``OFPMPF_REPLY_MORE``); ``FlowReader`` collects them
and refuses more than ``MAX_DUMP_BYTES``.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from meshrouter.dataplane.openflow.flowmod import (
    MATCH_ALL,
    OFPG_ANY,
    OFPP_ANY,
    OFPTT_ALL,
    Command,
)
from meshrouter.dataplane.openflow.wire import (
    HEADER_LEN,
    Message,
    MsgType,
    message,
)
from meshrouter.errors import MalformedMessageError

OFPMP_FLOW = 1
OFPMP_AGGREGATE = 2
OFPMPF_REPLY_MORE = 1
MAX_DUMP_BYTES = 256 * 1024 * 1024
_MP_HEAD = struct.Struct("!HH4x")
_REQUEST = struct.Struct("!B3xII4xQQ")
_AGG_REPLY = struct.Struct("!QQI4x")
_STATS = struct.Struct("!HBxIIHHHHH2xQQQ")  # ofp_flow_stats up to the match (48 bytes)
_FLOW_MOD_FIXED = struct.Struct("!QQBBHHHIIIHH")
BUNDLE_ADD_HEAD = 2 * HEADER_LEN  # header + bundle id/pad/flags, then the flow_mod


@dataclass(frozen=True, slots=True)
class FlowEntry:
    """One flow as bytes: what identifies it and what it does."""

    table: int
    priority: int
    cookie: int
    match: bytes
    """The padded ``ofp_match``."""
    instructions: bytes

    def key(self) -> bytes:
        """(table, priority, match): the flow's identity in the switch, as bytes."""
        return bytes((self.table,)) + self.priority.to_bytes(2, "big") + self.match


def _request(mp_type: int, xid: int, prefix: int, cookie_mask: int) -> bytes:
    body = (_MP_HEAD.pack(mp_type, 0)
            + _REQUEST.pack(OFPTT_ALL, OFPP_ANY, OFPG_ANY, prefix & cookie_mask, cookie_mask)
            + MATCH_ALL)
    return message(MsgType.MULTIPART_REQUEST, xid, body)


def aggregate_request(xid: int, prefix: int, cookie_mask: int) -> bytes:
    """``OFPMP_AGGREGATE`` over every table for cookies matching ``prefix`` under the mask."""
    return _request(OFPMP_AGGREGATE, xid, prefix, cookie_mask)


def flow_stats_request(xid: int, prefix: int, cookie_mask: int) -> bytes:
    """``OFPMP_FLOW`` over every table for cookies matching ``prefix`` under the mask."""
    return _request(OFPMP_FLOW, xid, prefix, cookie_mask)


def _multipart(msg: Message, mp_type: int) -> tuple[int, bytes]:
    if msg.type != MsgType.MULTIPART_REPLY or len(msg.body) < _MP_HEAD.size:
        raise MalformedMessageError("not a multipart reply")
    got, flags = _MP_HEAD.unpack_from(msg.body)
    if got != mp_type:
        raise MalformedMessageError(f"multipart reply of type {got}, expected {mp_type}")
    return flags, msg.body[_MP_HEAD.size:]


def aggregate_flow_count(msg: Message) -> int:
    """The flow count of an ``OFPMP_AGGREGATE`` reply."""
    _, body = _multipart(msg, OFPMP_AGGREGATE)
    if len(body) < _AGG_REPLY.size:
        raise MalformedMessageError("truncated aggregate reply")
    return int(_AGG_REPLY.unpack_from(body)[2])


def _match_size(data: bytes, offset: int) -> int:
    if len(data) - offset < 4:
        raise MalformedMessageError("truncated ofp_match")
    length = int.from_bytes(data[offset + 2:offset + 4], "big")
    if length < 4:
        raise MalformedMessageError(f"ofp_match length {length}")
    return (length + 7) // 8 * 8


def parse_flow_stats(msg: Message) -> tuple[list[FlowEntry], bool]:
    """The flows of one ``OFPMP_FLOW`` reply part, and whether more parts follow."""
    flags, body = _multipart(msg, OFPMP_FLOW)
    out: list[FlowEntry] = []
    offset = 0
    while offset < len(body):
        if len(body) - offset < _STATS.size:
            raise MalformedMessageError("truncated flow stats entry")
        (length, table, _, _, priority, _, _, _, _, cookie, _, _) = _STATS.unpack_from(
            body, offset)
        end = offset + length
        if length < _STATS.size + 8 or end > len(body):
            raise MalformedMessageError(f"flow stats entry length {length}")
        start = offset + _STATS.size
        match_end = start + _match_size(body, start)
        if match_end > end:
            raise MalformedMessageError("flow stats match overruns its entry")
        out.append(FlowEntry(table, priority, cookie, bytes(body[start:match_end]),
                             bytes(body[match_end:end])))
        offset = end
    return out, bool(flags & OFPMPF_REPLY_MORE)


def entry_of_add(bundled_add: bytes) -> FlowEntry:
    """The ``FlowEntry`` our bundled ``OFPFC_ADD`` installs (what the switch will dump)."""
    fixed = BUNDLE_ADD_HEAD + HEADER_LEN
    cookie, _, table, command, _, _, priority, *_ = _FLOW_MOD_FIXED.unpack_from(
        bundled_add, fixed)
    if command != Command.ADD:
        raise ValueError("not a bundled flow add")
    start = fixed + _FLOW_MOD_FIXED.size
    match_end = start + _match_size(bundled_add, start)
    return FlowEntry(table, priority, cookie, bundled_add[start:match_end],
                     bundled_add[match_end:])


def delete_strict_entry(xid: int, entry: FlowEntry, cookie_mask: int) -> bytes:
    """``OFPFC_DELETE_STRICT`` of a dumped flow, with the switch's own match bytes."""
    fixed = _FLOW_MOD_FIXED.pack(entry.cookie & cookie_mask, cookie_mask, entry.table,
                                 Command.DELETE_STRICT, 0, 0, entry.priority, 0xFFFFFFFF,
                                 OFPP_ANY, OFPG_ANY, 0, 0)
    return message(MsgType.FLOW_MOD, xid, fixed + entry.match)


class FlowReader:
    """Collects the parts of one flow stats reply (at most ``MAX_DUMP_BYTES``)."""

    def __init__(self) -> None:
        self.entries: list[FlowEntry] = []
        self.size = 0
        self.done = False

    def feed(self, msg: Message) -> None:
        self.size += len(msg.body)
        if self.size > MAX_DUMP_BYTES:
            raise MalformedMessageError(f"flow dump larger than {MAX_DUMP_BYTES} bytes")
        entries, more = parse_flow_stats(msg)
        self.entries += entries
        self.done = not more

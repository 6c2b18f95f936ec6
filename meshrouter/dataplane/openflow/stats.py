"""Theory of operation: reading our flows back from the switch (multipart statistics).

Two requests, both restricted to our cookie prefix so other owners' flows are
never read: ``OFPMP_AGGREGATE`` (how many flows: the shell's periodic check) and
``OFPMP_FLOW`` (the flows themselves: what a full apply diffs against).

A dumped flow is kept as bytes (``Flows``) and compared with the bytes of our
own ``OFPFC_ADD`` of the desired flow (``flow_of_add``): OVS writes a flow back
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
_STATS_LEN = 48  # ofp_flow_stats up to the match
_FLOW_MOD_FIXED = struct.Struct("!QQBBHHHIIIHH")
BUNDLE_ADD_HEAD = 2 * HEADER_LEN  # header + bundle id/pad/flags, then the flow_mod


Flows = dict[bytes, bytes]
"""Flows as bytes, ``{key: state}``: key = table (1 byte), priority (2), padded
``ofp_match`` -- the flow's identity in the switch; state = cookie (8 bytes) and
instructions -- what it does.  Byte strings, because a 10,000-flow dump is
compared with the desired table on every full apply: no object per flow."""


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


def parse_flow_stats(msg: Message) -> tuple[Flows, bool]:
    """The flows of one ``OFPMP_FLOW`` reply part, and whether more parts follow."""
    flags, body = _multipart(msg, OFPMP_FLOW)
    out: Flows = {}
    offset = 0
    size = len(body)
    while offset < size:
        if size - offset < _STATS_LEN:
            raise MalformedMessageError("truncated flow stats entry")
        length = int.from_bytes(body[offset:offset + 2], "big")
        end = offset + length
        if length < _STATS_LEN + 8 or end > size:
            raise MalformedMessageError(f"flow stats entry length {length}")
        start = offset + _STATS_LEN
        match_end = start + _match_size(body, start)
        if match_end > end:
            raise MalformedMessageError("flow stats match overruns its entry")
        # ofp_flow_stats: length(2) table(1) pad(1) duration(8) priority(2) ... cookie@24
        key = body[offset + 2:offset + 3] + body[offset + 12:offset + 14] + body[start:match_end]
        out[key] = body[offset + 24:offset + 32] + body[match_end:end]
        offset = end
    return out, bool(flags & OFPMPF_REPLY_MORE)


def flow_of_add(bundled_add: bytes) -> tuple[bytes, bytes]:
    """(key, state) of the flow our bundled ``OFPFC_ADD`` installs: what a dump of
    it will show."""
    fixed = BUNDLE_ADD_HEAD + HEADER_LEN  # ofp_flow_mod: cookie@0 table@16 priority@22
    if bundled_add[fixed + 17] != Command.ADD:
        raise ValueError("not a bundled flow add")
    start = fixed + _FLOW_MOD_FIXED.size
    match_end = start + _match_size(bundled_add, start)
    key = (bundled_add[fixed + 16:fixed + 17] + bundled_add[fixed + 22:fixed + 24]
           + bundled_add[start:match_end])
    return key, bundled_add[fixed:fixed + 8] + bundled_add[match_end:]


def delete_strict_flow(xid: int, key: bytes, state: bytes, cookie_mask: int) -> bytes:
    """``OFPFC_DELETE_STRICT`` of a dumped flow, with the switch's own match bytes,
    restricted to its cookie under ``cookie_mask``."""
    cookie = int.from_bytes(state[:8], "big")
    fixed = _FLOW_MOD_FIXED.pack(cookie & cookie_mask, cookie_mask, key[0], Command.DELETE_STRICT,
                                 0, 0, int.from_bytes(key[1:3], "big"), 0xFFFFFFFF, OFPP_ANY,
                                 OFPG_ANY, 0, 0)
    return message(MsgType.FLOW_MOD, xid, fixed + key[3:])


class FlowReader:
    """Collects the parts of one flow stats reply (at most ``MAX_DUMP_BYTES``)."""

    def __init__(self) -> None:
        self.flows: Flows = {}
        self.size = 0
        self.done = False

    def feed(self, msg: Message) -> None:
        self.size += len(msg.body)
        if self.size > MAX_DUMP_BYTES:
            raise MalformedMessageError(f"flow dump larger than {MAX_DUMP_BYTES} bytes")
        flows, more = parse_flow_stats(msg)
        self.flows.update(flows)
        self.done = not more

"""Theory of operation: ``Flow`` <-> OpenFlow 1.4 ``OFPT_FLOW_MOD`` messages.

Three flow_mods cover everything the router does to a switch:

* ``add(flow)`` -- ``OFPFC_ADD``: installs the flow, or replaces the flow with
  the same (table, priority, match); the cookie goes with it.
* ``delete_strict(flow, mask)`` -- ``OFPFC_DELETE_STRICT`` of exactly that
  (table, priority, match), restricted to cookies equal to ``flow.cookie``
  under ``mask`` (our prefix), so a flow of another owner with the same match
  is never touched.
* ``delete_cookie(prefix, mask)`` -- ``OFPFC_DELETE`` in every table of all
  flows whose cookie matches ``prefix`` under ``mask``: "all of ours", the
  first message of a full-table bundle.

``add`` and ``delete_strict`` of one flow depend only on the flow (the xid is
a constant chosen by the shell), so their bytes are cached per ``Flow`` object
by the caller: a 10,000-flow apply is a ``b"".join`` of cached messages.
``decode`` is the inverse used by the exact-bytes and round-trip tests.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from enum import IntEnum

from meshrouter.dataplane.core.flow import Action, Flow, Match
from meshrouter.dataplane.openflow import actions as act
from meshrouter.dataplane.openflow import oxm
from meshrouter.dataplane.openflow.wire import Message, MsgType, message
from meshrouter.errors import MalformedMessageError


class Command(IntEnum):
    ADD = 0
    MODIFY = 1
    MODIFY_STRICT = 2
    DELETE = 3
    DELETE_STRICT = 4


OFP_NO_BUFFER = 0xFFFFFFFF
OFPP_ANY = 0xFFFFFFFF
OFPG_ANY = 0xFFFFFFFF
OFPTT_ALL = 0xFF
ALL_BITS = (1 << 64) - 1
_FIXED = struct.Struct("!QQBBHHHIIIHH")
MATCH_ALL = oxm.encode_match(Match())


@dataclass(frozen=True, slots=True)
class FlowMod:
    """A decoded flow_mod (the fields this codec sets; the rest are fixed)."""

    command: Command
    table: int
    priority: int
    match: Match
    actions: tuple[Action, ...]
    cookie: int
    cookie_mask: int

    def flow(self) -> Flow:
        return Flow(self.table, self.priority, self.match, self.actions, self.cookie)


def _flow_mod(xid: int, command: Command, table: int, priority: int, match: bytes,
              instructions: bytes, cookie: int, cookie_mask: int) -> bytes:
    fixed = _FIXED.pack(cookie, cookie_mask, table, command, 0, 0, priority, OFP_NO_BUFFER,
                        OFPP_ANY, OFPG_ANY, 0, 0)
    return message(MsgType.FLOW_MOD, xid, fixed + match + instructions)


def add(xid: int, flow: Flow) -> bytes:
    """``OFPFC_ADD`` of ``flow`` (cookie_mask 0: the cookie is set, not matched)."""
    return _flow_mod(xid, Command.ADD, flow.table, flow.priority, oxm.encode_match(flow.match),
                     act.encode_instructions(flow.actions), flow.cookie, 0)


def delete_strict(xid: int, flow: Flow, cookie_mask: int) -> bytes:
    """``OFPFC_DELETE_STRICT`` of ``flow``'s key, only if its cookie matches under the mask."""
    return _flow_mod(xid, Command.DELETE_STRICT, flow.table, flow.priority,
                     oxm.encode_match(flow.match), b"", flow.cookie & cookie_mask, cookie_mask)


def delete_cookie(xid: int, prefix: int, cookie_mask: int) -> bytes:
    """``OFPFC_DELETE`` of every flow, in every table, whose cookie matches ``prefix``."""
    return _flow_mod(xid, Command.DELETE, OFPTT_ALL, 0, MATCH_ALL, b"", prefix & cookie_mask,
                     cookie_mask)


def decode(msg: Message) -> FlowMod:
    """A flow_mod message back to its fields; strict (see ``oxm``/``actions``)."""
    if msg.type != MsgType.FLOW_MOD or len(msg.body) < _FIXED.size:
        raise MalformedMessageError("not a flow_mod")
    (cookie, cookie_mask, table, command, idle, hard, priority, buffer_id, out_port, out_group,
     flags, importance) = _FIXED.unpack_from(msg.body)
    if (idle, hard, buffer_id, flags, importance) != (0, 0, OFP_NO_BUFFER, 0, 0):
        raise MalformedMessageError("flow_mod with timeouts, buffer, flags or importance")
    if (out_port, out_group) != (OFPP_ANY, OFPG_ANY):
        raise MalformedMessageError("flow_mod restricted to an out_port/out_group")
    try:
        cmd = Command(command)
    except ValueError:
        raise MalformedMessageError(f"unknown flow_mod command {command}") from None
    match, size = oxm.decode_match(msg.body, _FIXED.size)
    instructions = act.decode_instructions(msg.body[_FIXED.size + size:])
    return FlowMod(cmd, table, priority, match, instructions, cookie, cookie_mask)


def describe(data: bytes) -> str:
    """Best-effort ``table=T,priority=P,cookie=C`` of a (possibly truncated) flow_mod,
    for error messages: the switch echoes only the first 64 bytes of what it refused."""
    if len(data) >= 16 and data[1] == MsgType.BUNDLE_ADD_MESSAGE:
        data = data[16:]  # header + bundle id, pad, flags: the refused flow_mod follows
    if len(data) < 8 + 26:
        return "a truncated message"
    _, mtype, _, _ = struct.unpack_from("!BBHI", data)
    if mtype != MsgType.FLOW_MOD:
        return f"message type {mtype}"
    cookie, _, table, command, _, _, priority = struct.unpack_from("!QQBBHHH", data, 8)
    name = Command(command).name if command in Command._value2member_map_ else str(command)
    return f"{name} table={table},priority={priority},cookie=0x{cookie:x}"

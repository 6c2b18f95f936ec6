"""Theory of operation: our action list <-> OpenFlow 1.4 instructions.

A flow's actions become at most two instructions, as ``ovs-ofctl`` writes
them: ``APPLY_ACTIONS`` with every action but the last ``goto_table``, then
``GOTO_TABLE``.  No actions at all ("drop") is no instruction.  Each action is
encoded the way ``ovs-ofctl`` encodes its text for OpenFlow 1.4, so the
switch stores -- and dumps -- the same flow either way:

=================  =====================================================
``output:P``       ``OFPAT_OUTPUT`` (port P, max_len 0)
``IN_PORT``        ``OFPAT_OUTPUT`` to ``OFPP_IN_PORT``
``set_field``      ``OFPAT_SET_FIELD`` (OXM; NXM header for ``tun_dst``)
``dec_ttl``        ``OFPAT_DEC_NW_TTL``
``load:0->in_port`` Nicira ``NXAST_REG_LOAD`` (``load`` stays ``load``)
``move``           Nicira ``NXAST_REG_MOVE`` (OVS's choice below OF 1.5)
=================  =====================================================

``ArpReply`` is the fixed sequence of seven moves/set_fields; the decoder
recognises exactly that sequence.  Anything else is a ``MalformedMessageError``.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from typing import Any

from meshrouter.dataplane.core.flow import (
    Action,
    ArpReply,
    ClearInPort,
    DecTtl,
    GotoTable,
    Output,
    OutputInPort,
    SetTunnelDst,
    SetTunnelId,
)
from meshrouter.dataplane.openflow import oxm
from meshrouter.errors import MalformedMessageError

OFPIT_GOTO_TABLE = 1
OFPIT_APPLY_ACTIONS = 4
OFPAT_OUTPUT = 0
OFPAT_DEC_NW_TTL = 24
OFPAT_SET_FIELD = 25
OFPAT_EXPERIMENTER = 0xFFFF
NX_VENDOR = 0x00002320
NXAST_REG_MOVE = 6
NXAST_REG_LOAD = 7
OFPP_IN_PORT = 0xFFFFFFF8
ARP_REPLY_OP = 2

_OUTPUT = struct.Struct("!HHIH6x")
_DEC_TTL = struct.pack("!HH4x", OFPAT_DEC_NW_TTL, 8)
_MOVE = struct.Struct("!HHIHHHHII")
_LOAD = struct.Struct("!HHIHHIQ")
_ACT_HEAD = struct.Struct("!HH")
_GOTO = struct.Struct("!HHB3x")
_APPLY_HEAD = struct.Struct("!HH4x")


def output(port: int) -> bytes:
    return _OUTPUT.pack(OFPAT_OUTPUT, 16, port, 0)


def set_field(hdr: int, value: bytes) -> bytes:
    """``OFPAT_SET_FIELD`` with one TLV, padded to a multiple of 8."""
    length = 4 + 4 + len(value)
    padded = (length + 7) // 8 * 8
    return _ACT_HEAD.pack(OFPAT_SET_FIELD, padded) + oxm.tlv(hdr, value) + bytes(padded - length)


def reg_move(src: int, dst: int) -> bytes:
    """Copy the whole of field ``src`` to ``dst`` (both NXM headers, same width)."""
    bits = (src & 0xFF) * 8
    return _MOVE.pack(OFPAT_EXPERIMENTER, 24, NX_VENDOR, NXAST_REG_MOVE, bits, 0, 0, src, dst)


def reg_load(dst: int, value: int) -> bytes:
    """Load ``value`` into the whole of field ``dst`` (an NXM header)."""
    ofs_nbits = (dst & 0xFF) * 8 - 1  # offset 0, n_bits - 1
    return _LOAD.pack(OFPAT_EXPERIMENTER, 24, NX_VENDOR, NXAST_REG_LOAD, ofs_nbits, dst, value)


def _set_field_head(hdr: int) -> tuple[bytes, bytes]:
    """The bytes before and after the value of a ``set_field`` of ``hdr``."""
    whole = set_field(hdr, bytes(hdr & 0xFF))
    return whole[:8], whole[8 + (hdr & 0xFF):]


# The ARP reply is seven actions of which three are constant: pre-encoded, so a
# 10,000-flow table encodes in tens of milliseconds, not hundreds.
_MOVE_ETH = reg_move(oxm.NXM_OF_ETH_SRC, oxm.NXM_OF_ETH_DST)
_SET_ARP_OP = set_field(oxm.ARP_OP, ARP_REPLY_OP.to_bytes(2, "big"))
_MOVE_SHA = reg_move(oxm.NXM_NX_ARP_SHA, oxm.NXM_NX_ARP_THA)
_MOVE_SPA = reg_move(oxm.NXM_OF_ARP_SPA, oxm.NXM_OF_ARP_TPA)
_ETH_SRC_HEAD, _ETH_SRC_PAD = _set_field_head(oxm.ETH_SRC)
_ARP_SHA_HEAD, _ARP_SHA_PAD = _set_field_head(oxm.ARP_SHA)
_ARP_SPA_HEAD, _ARP_SPA_PAD = _set_field_head(oxm.ARP_SPA)
_TUN_DST_HEAD, _TUN_DST_PAD = _set_field_head(oxm.NX_TUN_IPV4_DST)
_TUN_ID_HEAD, _TUN_ID_PAD = _set_field_head(oxm.TUNNEL_ID)
_IN_PORT = output(OFPP_IN_PORT)
_CLEAR_IN_PORT = reg_load(oxm.NXM_OF_IN_PORT, 0)


def _arp_reply(a: ArpReply) -> bytes:
    mac = oxm.mac_bytes(a.mac)
    return b"".join((
        _MOVE_ETH,
        _ETH_SRC_HEAD, mac, _ETH_SRC_PAD,
        _SET_ARP_OP,
        _MOVE_SHA,
        _MOVE_SPA,
        _ARP_SHA_HEAD, mac, _ARP_SHA_PAD,
        _ARP_SPA_HEAD, oxm.ip_bytes(a.ip), _ARP_SPA_PAD,
    ))


def _output(a: Output) -> bytes:
    return _OUTPUT.pack(OFPAT_OUTPUT, 16, a.port, 0)


def _tun_dst(a: SetTunnelDst) -> bytes:
    return _TUN_DST_HEAD + oxm.ip_bytes(a.ip) + _TUN_DST_PAD


def _tun_id(a: SetTunnelId) -> bytes:
    return _TUN_ID_HEAD + a.vni.to_bytes(8, "big") + _TUN_ID_PAD


_ENCODERS: dict[type, Callable[[Any], bytes]] = {
    Output: _output,
    OutputInPort: lambda _: _IN_PORT,
    SetTunnelDst: _tun_dst,
    SetTunnelId: _tun_id,
    DecTtl: lambda _: _DEC_TTL,
    ClearInPort: lambda _: _CLEAR_IN_PORT,
    ArpReply: _arp_reply,
}


def encode_action(action: Action) -> bytes:
    encoder = _ENCODERS.get(type(action))
    if encoder is None:  # GotoTable is an instruction, not an action
        raise ValueError(f"{action!r} has no OpenFlow action encoding")
    return encoder(action)


def encode_instructions(actions: tuple[Action, ...]) -> bytes:
    """The instruction list of a flow with ``actions`` (``Flow`` checked goto is last)."""
    goto = None
    if actions and isinstance(actions[-1], GotoTable):
        goto, actions = actions[-1], actions[:-1]
    out = b""
    if actions:
        get = _ENCODERS.get
        try:
            body = b"".join([get(type(a))(a) for a in actions])  # type: ignore[misc]
        except TypeError:  # get() gave None: not an action (a goto before the end)
            raise ValueError(f"no OpenFlow action encoding for one of {actions!r}") from None
        out = _APPLY_HEAD.pack(OFPIT_APPLY_ACTIONS, 8 + len(body)) + body
    if goto is not None:
        out += _GOTO.pack(OFPIT_GOTO_TABLE, 8, goto.table)
    return out


# -- decoding -------------------------------------------------------------------------

_ARP_SEQUENCE = ("move", oxm.NXM_OF_ETH_SRC, oxm.NXM_OF_ETH_DST)


def _split_actions(data: bytes) -> list[bytes]:
    out: list[bytes] = []
    offset = 0
    while offset < len(data):
        if len(data) - offset < 8:
            raise MalformedMessageError("truncated action")
        _, length = _ACT_HEAD.unpack_from(data, offset)
        if length < 8 or length % 8 or offset + length > len(data):
            raise MalformedMessageError(f"bad action length {length}")
        out.append(bytes(data[offset:offset + length]))
        offset += length
    return out


def _raw(action: bytes) -> tuple[object, ...]:
    """A decoded primitive: ("output", port), ("set", hdr, value), ("move", src, dst),
    ("load", dst, value) or ("dec_ttl",)."""
    atype, length = _ACT_HEAD.unpack_from(action)
    if atype == OFPAT_OUTPUT and length == 16:
        return ("output", _OUTPUT.unpack(action)[2])
    if atype == OFPAT_DEC_NW_TTL and length == 8:
        return ("dec_ttl",)
    if atype == OFPAT_SET_FIELD:
        (hdr,) = struct.unpack_from("!I", action, 4)
        size = hdr & 0xFF
        if length != (8 + size + 7) // 8 * 8 or any(action[8 + size:]):
            raise MalformedMessageError("bad set_field (length or padding)")
        return ("set", hdr, action[8:8 + size])
    if atype == OFPAT_EXPERIMENTER and length == 24:
        _, _, vendor, subtype = struct.unpack_from("!HHIH", action)
        if vendor == NX_VENDOR and subtype == NXAST_REG_MOVE:
            _, _, _, _, bits, src_ofs, dst_ofs, src, dst = _MOVE.unpack(action)
            if src_ofs == dst_ofs == 0 and bits == (src & 0xFF) * 8 == (dst & 0xFF) * 8:
                return ("move", src, dst)
        if vendor == NX_VENDOR and subtype == NXAST_REG_LOAD:
            _, _, _, _, ofs_nbits, dst, value = _LOAD.unpack(action)
            if ofs_nbits == (dst & 0xFF) * 8 - 1:
                return ("load", dst, value)
    raise MalformedMessageError(f"action type {atype} (length {length}) is not one of ours")


def _decode_actions(data: bytes) -> list[Action]:
    raws = [_raw(a) for a in _split_actions(data)]
    out: list[Action] = []
    i = 0
    while i < len(raws):
        r = raws[i]
        if r == _ARP_SEQUENCE and i + 7 <= len(raws):
            seq = raws[i:i + 7]
            try:
                candidate = ArpReply(oxm.mac_text(_value(seq[1], oxm.ETH_SRC)),
                                     oxm.ip_text(_value(seq[6], oxm.ARP_SPA)))
            except (MalformedMessageError, ValueError):
                candidate = None
            if candidate is not None and _raws(_arp_reply(candidate)) == seq:
                out.append(candidate)
                i += 7
                continue
        if r[0] == "output":
            port = r[1]
            assert isinstance(port, int)
            out.append(OutputInPort() if port == OFPP_IN_PORT else Output(port))
        elif r[0] == "dec_ttl":
            out.append(DecTtl())
        elif r[0] == "load" and r[1] == oxm.NXM_OF_IN_PORT and r[2] == 0:
            out.append(ClearInPort())
        elif r[0] == "set" and r[1] == oxm.NX_TUN_IPV4_DST:
            out.append(SetTunnelDst(oxm.ip_text(_value(r, oxm.NX_TUN_IPV4_DST))))
        elif r[0] == "set" and r[1] == oxm.TUNNEL_ID:
            out.append(SetTunnelId(int.from_bytes(_value(r, oxm.TUNNEL_ID), "big")))
        else:
            raise MalformedMessageError(f"action {r[0]} is not one of ours here")
        i += 1
    return out


def _value(raw: tuple[object, ...], hdr: int) -> bytes:
    if raw[0] != "set" or raw[1] != hdr or not isinstance(raw[2], bytes):
        raise MalformedMessageError("unexpected action in a sequence")
    return raw[2]


def _raws(data: bytes) -> list[tuple[object, ...]]:
    return [_raw(a) for a in _split_actions(data)]


def decode_instructions(data: bytes) -> tuple[Action, ...]:
    """The action tuple of an instruction list (the inverse of ``encode_instructions``)."""
    actions: list[Action] = []
    goto: GotoTable | None = None
    offset = 0
    seen_apply = False
    while offset < len(data):
        if len(data) - offset < 8:
            raise MalformedMessageError("truncated instruction")
        itype, length = _ACT_HEAD.unpack_from(data, offset)
        if length < 8 or offset + length > len(data):
            raise MalformedMessageError(f"bad instruction length {length}")
        if itype == OFPIT_APPLY_ACTIONS and not seen_apply and goto is None:
            actions = _decode_actions(data[offset + 8:offset + length])
            seen_apply = True
        elif itype == OFPIT_GOTO_TABLE and length == 8 and goto is None:
            goto = GotoTable(data[offset + 4])
        else:
            raise MalformedMessageError(f"instruction {itype} is not one of ours here")
        offset += length
    return (*actions, goto) if goto is not None else tuple(actions)

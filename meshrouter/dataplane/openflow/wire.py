"""Theory of operation: OpenFlow 1.4 framing and the few control messages we use.

Every OpenFlow message starts with an 8-byte header (version, type, length,
xid); the length covers the whole message and is at most 65,535, so a stream
is split into messages by ``Framer`` with no other state, and a peer cannot
make us buffer more than one maximal message plus the chunk just received.

The router speaks only OpenFlow 1.4 (``VERSION``): the first version with
standard bundles (``OFPT_BUNDLE_CONTROL`` / ``OFPT_BUNDLE_ADD_MESSAGE``), which
give an atomic multi-flow change, and the one ``ovs-ofctl --bundle`` itself
negotiates with our bridges (they allow OpenFlow 1.0 and 1.3-1.5).  The hello
carries a version bitmap holding 1.4 alone, so a switch either agrees on 1.4 or
the handshake fails and the shell falls back to ``ovs-ofctl``.

A bundle is one ``OPEN`` request, one ``ADD_MESSAGE`` per flow_mod and one
``COMMIT`` request, pipelined with no round trip between them: the switch
handles one connection's messages in order, so an error in an add arrives
before the commit's answer, and the commit of a bundle with a bad add fails as
a whole (nothing applied).  The bundle ID is constant: we never have two
bundles open on one connection, and the switch forgets a bundle once committed
or when the connection closes.  Pure bytes in, bytes out; the trio shell is
``meshrouter.dataplane.ovs.ofchannel``.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from enum import IntEnum

from meshrouter.errors import MalformedMessageError

VERSION = 0x05
"""OpenFlow 1.4."""

HEADER = struct.Struct("!BBHI")
HEADER_LEN = HEADER.size
MAX_MESSAGE = 0xFFFF


class MsgType(IntEnum):
    """The message types (``ofp_type``) this codec builds or reads."""

    HELLO = 0
    ERROR = 1
    ECHO_REQUEST = 2
    ECHO_REPLY = 3
    EXPERIMENTER = 4
    FLOW_MOD = 14
    MULTIPART_REQUEST = 18
    MULTIPART_REPLY = 19
    BARRIER_REQUEST = 20
    BARRIER_REPLY = 21
    BUNDLE_CONTROL = 33
    BUNDLE_ADD_MESSAGE = 34


class BundleCtrl(IntEnum):
    """``ofp_bundle_ctrl_type``."""

    OPEN_REQUEST = 0
    OPEN_REPLY = 1
    CLOSE_REQUEST = 2
    CLOSE_REPLY = 3
    COMMIT_REQUEST = 4
    COMMIT_REPLY = 5
    DISCARD_REQUEST = 6
    DISCARD_REPLY = 7


BUNDLE_ATOMIC = 1
BUNDLE_ORDERED = 2
BUNDLE_FLAGS = BUNDLE_ATOMIC | BUNDLE_ORDERED
"""What ``ovs-ofctl --bundle`` asks for; OVS requires atomic."""
BUNDLE_ID = 0x6D72
_BUNDLE_CTRL = struct.Struct("!IHH")
_BUNDLE_ADD = struct.Struct("!IHH")
_ERROR = struct.Struct("!HH")
_HELLO_ELEM = struct.Struct("!HHI")
HELLO_VERSIONBITMAP = 1

ERROR_TYPES = {
    0: "HELLO_FAILED", 1: "BAD_REQUEST", 2: "BAD_ACTION", 3: "BAD_INSTRUCTION",
    4: "BAD_MATCH", 5: "FLOW_MOD_FAILED", 6: "GROUP_MOD_FAILED", 7: "PORT_MOD_FAILED",
    8: "TABLE_MOD_FAILED", 9: "QUEUE_OP_FAILED", 10: "SWITCH_CONFIG_FAILED",
    11: "ROLE_REQUEST_FAILED", 12: "METER_MOD_FAILED", 13: "TABLE_FEATURES_FAILED",
    14: "BAD_PROPERTY", 15: "ASYNC_CONFIG_FAILED", 16: "FLOW_MONITOR_FAILED",
    17: "BUNDLE_FAILED", 0xFFFF: "EXPERIMENTER",
}


@dataclass(frozen=True, slots=True)
class Message:
    """One framed message: its header fields and the body after the header."""

    version: int
    type: int
    xid: int
    body: bytes


@dataclass(frozen=True, slots=True)
class ErrorMsg:
    """An ``OFPT_ERROR``: type, code and the start of the offending message."""

    type: int
    code: int
    data: bytes

    def describe(self) -> str:
        """``BAD_MATCH/4`` style, plus the refused message's type when it is there."""
        name = ERROR_TYPES.get(self.type, str(self.type))
        what = ""
        if len(self.data) >= HEADER_LEN:
            _, mtype, _, _ = HEADER.unpack_from(self.data)
            try:
                what = f" (refused {MsgType(mtype).name})"
            except ValueError:
                what = f" (refused message type {mtype})"
        if self.type == 0xFFFF and len(self.data) >= 4:
            # experimenter errors: code is exp_code, data starts with the experimenter id
            (exp,) = struct.unpack_from("!I", self.data)
            return f"EXPERIMENTER 0x{exp:x} code {self.code}"
        return f"{name}/{self.code}{what}"


def message(mtype: int, xid: int, body: bytes = b"") -> bytes:
    """A complete message: header + body (ValueError when over 65,535 bytes)."""
    length = HEADER_LEN + len(body)
    if length > MAX_MESSAGE:
        raise ValueError(f"OpenFlow message of {length} bytes exceeds {MAX_MESSAGE}")
    return HEADER.pack(VERSION, mtype, length, xid & 0xFFFFFFFF) + body


def hello(xid: int) -> bytes:
    """A hello whose version bitmap offers OpenFlow 1.4 only."""
    return message(MsgType.HELLO, xid, _HELLO_ELEM.pack(HELLO_VERSIONBITMAP, 8, 1 << VERSION))


def hello_versions(msg: Message) -> set[int]:
    """Versions a peer's hello offers: its bitmap, or its header version and below."""
    body = msg.body
    offset = 0
    while offset + 4 <= len(body):
        etype, elen = struct.unpack_from("!HH", body, offset)
        if elen < 4 or offset + elen > len(body):
            break
        if etype == HELLO_VERSIONBITMAP:
            bits = 0
            for i in range((elen - 4) // 4):
                (word,) = struct.unpack_from("!I", body, offset + 4 + 4 * i)
                bits |= word << (32 * i)
            return {v for v in range(bits.bit_length()) if bits >> v & 1}
        offset += (elen + 7) // 8 * 8
    return set(range(1, msg.version + 1))


def echo_reply(request: Message) -> bytes:
    """The answer to an echo request (same xid, same payload)."""
    return message(MsgType.ECHO_REPLY, request.xid, request.body)


def barrier_request(xid: int) -> bytes:
    return message(MsgType.BARRIER_REQUEST, xid)


def bundle_control(xid: int, ctrl: BundleCtrl, bundle_id: int = BUNDLE_ID) -> bytes:
    return message(MsgType.BUNDLE_CONTROL, xid,
                   _BUNDLE_CTRL.pack(bundle_id, ctrl, BUNDLE_FLAGS))


def bundle_add(xid: int, inner: bytes, bundle_id: int = BUNDLE_ID) -> bytes:
    """Wrap a complete message (whose xid should be ``xid``) into a bundle add."""
    return message(MsgType.BUNDLE_ADD_MESSAGE, xid,
                   _BUNDLE_ADD.pack(bundle_id, 0, BUNDLE_FLAGS) + inner)


def parse_bundle_control(msg: Message) -> tuple[int, BundleCtrl, int]:
    """(bundle id, control type, flags) of a bundle control message."""
    if msg.type != MsgType.BUNDLE_CONTROL or len(msg.body) < _BUNDLE_CTRL.size:
        raise MalformedMessageError("not a bundle control message")
    bundle_id, ctrl, flags = _BUNDLE_CTRL.unpack_from(msg.body)
    try:
        return bundle_id, BundleCtrl(ctrl), flags
    except ValueError:
        raise MalformedMessageError(f"unknown bundle control type {ctrl}") from None


def parse_bundle_add(msg: Message) -> tuple[int, int, bytes]:
    """(bundle id, flags, inner message bytes) of a bundle add message."""
    if msg.type != MsgType.BUNDLE_ADD_MESSAGE or len(msg.body) < _BUNDLE_ADD.size + HEADER_LEN:
        raise MalformedMessageError("not a bundle add message")
    bundle_id, _, flags = _BUNDLE_ADD.unpack_from(msg.body)
    return bundle_id, flags, msg.body[_BUNDLE_ADD.size:]


def parse_error(msg: Message) -> ErrorMsg:
    if msg.type != MsgType.ERROR or len(msg.body) < _ERROR.size:
        raise MalformedMessageError("not an OpenFlow error message")
    etype, code = _ERROR.unpack_from(msg.body)
    return ErrorMsg(etype, code, msg.body[_ERROR.size:])


def split(data: bytes) -> Message:
    """Decode exactly one complete message (its length must match ``data``)."""
    if len(data) < HEADER_LEN:
        raise MalformedMessageError(f"OpenFlow message of {len(data)} bytes is too short")
    version, mtype, length, xid = HEADER.unpack_from(data)
    if length != len(data):
        raise MalformedMessageError(f"OpenFlow length {length} but {len(data)} bytes")
    return Message(version, mtype, xid, bytes(data[HEADER_LEN:]))


class Framer:
    """Splits a byte stream into messages; refuses lengths below the header size.
    Between feeds it holds less than one message (at most 65,535 bytes): every
    complete message is handed out, and a length cannot say more than that."""

    def __init__(self) -> None:
        self._buf = bytearray()

    def feed(self, data: bytes) -> list[Message]:
        self._buf += data
        out: list[Message] = []
        buf = self._buf
        offset = 0
        while len(buf) - offset >= HEADER_LEN:
            version, mtype, length, xid = HEADER.unpack_from(buf, offset)
            if length < HEADER_LEN:
                raise MalformedMessageError(f"OpenFlow message length {length} < header")
            if len(buf) - offset < length:
                break
            out.append(Message(version, mtype, xid,
                               bytes(buf[offset + HEADER_LEN:offset + length])))
            offset += length
        del buf[:offset]
        return out

    def pending(self) -> int:
        """Bytes of an incomplete message held."""
        return len(self._buf)

"""Theory of operation: ``Match`` <-> the OXM TLVs of an OpenFlow 1.4 ``ofp_match``.

Only the fields our pipeline matches on are known; each is a fixed-size
OpenFlow-basic OXM (class 0x8000), written in OVS's own order (so the switch
dumps a flow back with the very bytes we sent), values in network byte order.
``dl_dst`` alone may carry a mask (the group bit).  The same TLVs serve
``set_field`` actions (``actions.py``), plus the Nicira NXM headers OVS uses
for fields OpenFlow has no OXM for (``tun_dst``) and for ``move``/``load``.

Decoding is strict: an unknown class/field, a wrong length, a duplicated field
or a mask where none is allowed is a ``MalformedMessageError`` -- the decoder
exists for tests and for reading back what the switch holds, and a field we
cannot represent must not be silently dropped.
"""

from __future__ import annotations

import ipaddress
import re
import struct
from collections.abc import Callable

from meshrouter.dataplane.core.flow import Match
from meshrouter.errors import MalformedMessageError

OFPXMC_BASIC = 0x8000
NXM_0 = 0x0000
NXM_1 = 0x0001
OFPMT_OXM = 1
_MATCH_HEAD = struct.Struct("!HH")


def header(cls: int, field: int, length: int, masked: bool = False) -> int:
    """An OXM/NXM header: class(16) field(7) hasmask(1) length(8)."""
    return (cls << 16) | (field << 9) | (int(masked) << 8) | length


# (Match attribute, OXM field number, value length) in encoding order.
IN_PORT = header(OFPXMC_BASIC, 0, 4)
ETH_DST = header(OFPXMC_BASIC, 3, 6)
ETH_DST_W = header(OFPXMC_BASIC, 3, 12, masked=True)
ETH_SRC = header(OFPXMC_BASIC, 4, 6)
ETH_TYPE = header(OFPXMC_BASIC, 5, 2)
IPV4_SRC = header(OFPXMC_BASIC, 11, 4)
IPV4_DST = header(OFPXMC_BASIC, 12, 4)
ARP_OP = header(OFPXMC_BASIC, 21, 2)
ARP_SPA = header(OFPXMC_BASIC, 22, 4)
ARP_TPA = header(OFPXMC_BASIC, 23, 4)
ARP_SHA = header(OFPXMC_BASIC, 24, 6)
ARP_THA = header(OFPXMC_BASIC, 25, 6)
TUNNEL_ID = header(OFPXMC_BASIC, 38, 8)
# Nicira extension headers (OVS's names in ovs-fields(7)).
NX_TUN_IPV4_DST = header(NXM_1, 32, 4)
NXM_OF_IN_PORT = header(NXM_0, 0, 2)
NXM_OF_ETH_DST = header(NXM_0, 1, 6)
NXM_OF_ETH_SRC = header(NXM_0, 2, 6)
NXM_OF_ARP_SPA = header(NXM_0, 16, 4)
NXM_OF_ARP_TPA = header(NXM_0, 17, 4)
NXM_NX_ARP_SHA = header(NXM_1, 17, 6)
NXM_NX_ARP_THA = header(NXM_1, 18, 6)

_U32 = struct.Struct("!I")
_DOTTED = re.compile(r"\d{1,3}\.\d{1,3}\.\d{1,3}\.\d{1,3}", re.ASCII)


def mac_bytes(mac: str) -> bytes:
    raw = bytes.fromhex(mac.replace(":", ""))
    if len(raw) != 6:
        raise ValueError(f"bad MAC {mac!r}")
    return raw


def mac_text(raw: bytes) -> str:
    return ":".join(f"{b:02x}" for b in raw)


def ip_bytes(ip: str) -> bytes:
    """Dotted quad to 4 bytes (hot: ``ipaddress`` costs 5x more per address)."""
    if _DOTTED.fullmatch(ip) is None:
        raise ValueError(f"bad IPv4 address {ip!r}")
    return bytes(map(int, ip.split(".")))  # ValueError above 255


def ip_text(raw: bytes) -> str:
    return str(ipaddress.IPv4Address(raw))


def tlv(hdr: int, value: bytes) -> bytes:
    return _U32.pack(hdr) + value


def encode_fields(m: Match) -> bytes:
    """The OXM TLVs of ``m`` (no ``ofp_match`` head, no padding), in the order OVS
    itself writes them (``nx_put_raw``: in_port, Ethernet, L3, ARP, tunnel), so a
    flow read back from the switch has exactly the bytes we sent."""
    out: list[bytes] = []
    if m.in_port is not None:
        out.append(tlv(IN_PORT, _U32.pack(m.in_port)))
    if m.dl_src is not None:
        out.append(tlv(ETH_SRC, mac_bytes(m.dl_src)))
    if m.dl_dst is not None:
        if m.dl_dst_mask is not None:
            out.append(tlv(ETH_DST_W, mac_bytes(m.dl_dst) + mac_bytes(m.dl_dst_mask)))
        else:
            out.append(tlv(ETH_DST, mac_bytes(m.dl_dst)))
    if m.dl_type is not None:
        out.append(tlv(ETH_TYPE, m.dl_type.to_bytes(2, "big")))
    if m.nw_src is not None:
        out.append(tlv(IPV4_SRC, ip_bytes(m.nw_src)))
    if m.nw_dst is not None:
        out.append(tlv(IPV4_DST, ip_bytes(m.nw_dst)))
    if m.arp_op is not None:
        out.append(tlv(ARP_OP, m.arp_op.to_bytes(2, "big")))
    if m.arp_spa is not None:
        out.append(tlv(ARP_SPA, ip_bytes(m.arp_spa)))
    if m.arp_tpa is not None:
        out.append(tlv(ARP_TPA, ip_bytes(m.arp_tpa)))
    if m.arp_sha is not None:
        out.append(tlv(ARP_SHA, mac_bytes(m.arp_sha)))
    if m.tun_id is not None:
        out.append(tlv(TUNNEL_ID, m.tun_id.to_bytes(8, "big")))
    return b"".join(out)


def encode_match(m: Match) -> bytes:
    """A complete ``ofp_match`` (type OXM), padded to a multiple of 8 bytes."""
    fields = encode_fields(m)
    length = _MATCH_HEAD.size + len(fields)
    return _MATCH_HEAD.pack(OFPMT_OXM, length) + fields + bytes(-length % 8)


# header -> (Match attribute, converter)
def _int(value: bytes) -> int:
    return int.from_bytes(value, "big")


_DECODE: dict[int, tuple[str, Callable[[bytes], object]]] = {
    IN_PORT: ("in_port", _int),
    ETH_TYPE: ("dl_type", _int),
    ETH_SRC: ("dl_src", mac_text),
    ETH_DST: ("dl_dst", mac_text),
    ARP_OP: ("arp_op", _int),
    ARP_SPA: ("arp_spa", ip_text),
    ARP_TPA: ("arp_tpa", ip_text),
    ARP_SHA: ("arp_sha", mac_text),
    IPV4_SRC: ("nw_src", ip_text),
    IPV4_DST: ("nw_dst", ip_text),
    TUNNEL_ID: ("tun_id", _int),
}


def iter_tlvs(data: bytes) -> list[tuple[int, bytes]]:
    """(header, value) of each TLV in ``data``; refuses a truncated one."""
    out: list[tuple[int, bytes]] = []
    offset = 0
    while offset < len(data):
        if len(data) - offset < 4:
            raise MalformedMessageError("truncated OXM header")
        (hdr,) = _U32.unpack_from(data, offset)
        length = hdr & 0xFF
        if offset + 4 + length > len(data):
            raise MalformedMessageError(f"OXM 0x{hdr:08x} overruns the match")
        out.append((hdr, bytes(data[offset + 4:offset + 4 + length])))
        offset += 4 + length
    return out


def decode_match(data: bytes, offset: int = 0) -> tuple[Match, int]:
    """The ``Match`` of the ``ofp_match`` at ``offset`` and the padded size it took."""
    if len(data) - offset < _MATCH_HEAD.size:
        raise MalformedMessageError("truncated ofp_match")
    mtype, length = _MATCH_HEAD.unpack_from(data, offset)
    padded = (length + 7) // 8 * 8
    if mtype != OFPMT_OXM or length < _MATCH_HEAD.size or offset + padded > len(data):
        raise MalformedMessageError(f"bad ofp_match (type {mtype}, length {length})")
    values: dict[str, object] = {}
    for hdr, value in iter_tlvs(data[offset + _MATCH_HEAD.size:offset + length]):
        if hdr == ETH_DST_W:
            name = "dl_dst"
            values["dl_dst_mask"] = mac_text(value[6:])
            converted: object = mac_text(value[:6])
        elif hdr in _DECODE:
            name, convert = _DECODE[hdr]
            converted = convert(value)
        else:
            raise MalformedMessageError(f"OXM field 0x{hdr:08x} is not one of ours")
        if name in values:
            raise MalformedMessageError(f"OXM field {name} twice")
        values[name] = converted
    try:
        return Match(**values), padded  # type: ignore[arg-type]
    except ValueError as exc:
        raise MalformedMessageError(f"match refused: {exc}") from None

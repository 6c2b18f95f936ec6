"""The OpenFlow 1.4 codec: exact bytes (annotated from the spec, checked by
``ovs-ofctl ofp-print``), decode(encode(x)) == x, framing of a byte stream."""

from __future__ import annotations

import shutil
import struct
import subprocess

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from meshrouter.dataplane.core.flow import (
    Action,
    ArpReply,
    ClearInPort,
    DecTtl,
    Flow,
    GotoTable,
    Match,
    Output,
    OutputInPort,
    SetTunnelDst,
    SetTunnelId,
)
from meshrouter.dataplane.core.pipeline import (
    COOKIE_MASK,
    COOKIE_PREFIX,
    ETH_TYPE_ARP,
    ETH_TYPE_IP,
    Category,
    cookie,
)
from meshrouter.dataplane.openflow import actions, flowmod, stats, wire
from meshrouter.errors import MalformedMessageError
from tests.dataplane.test_flow import ARP_RESPONDER, SAMPLES

XID = 0x11223344


def hexbytes(text: str) -> bytes:
    """Hex with comments (``# ...`` to end of line) and whitespace ignored."""
    return bytes.fromhex("".join(line.split("#")[0] for line in text.splitlines()))


# cookie=0x6d72000200000001,table=0,priority=100,ip,in_port=1000,dl_src=02:40:00:00:01:02,
# nw_src=10.40.1.2 actions=goto_table:20
CLASSIFY_IP = hexbytes("""
05 0e 0060 11223344            # OF1.4 FLOW_MOD, 96 bytes, xid
6d72000200000001 0000000000000000   # cookie, cookie_mask
00 00 0000 0000 0064           # table 0, ADD, idle 0, hard 0, priority 100
ffffffff ffffffff ffffffff     # buffer none, out_port any, out_group any
0000 0000                      # flags, importance
0001 0024                      # ofp_match: OXM, 36 bytes
80000004 000003e8              #   in_port=1000
80000806 024000000102          #   eth_src (OVS's order: Ethernet source before type)
80000a02 0800                  #   eth_type=ip
80001604 0a280102              #   ipv4_src=10.40.1.2
00000000                       #   pad to 8
0001 0008 14 000000            # GOTO_TABLE 20
""")

# cookie=0x6d72000400000005,table=30,priority=100,ip,tun_id=0x5
# actions=load:0->NXM_OF_IN_PORT[],dec_ttl,goto_table:50
RELAY = hexbytes("""
05 0e 0078 11223344
6d72000400000005 0000000000000000
1e 00 0000 0000 0064
ffffffff ffffffff ffffffff
0000 0000
0001 0016                      # ofp_match, 22 bytes
80000a02 0800                  #   eth_type=ip
80004c08 0000000000000005      #   tunnel_id=5
0000                           #   pad
0004 0028 00000000             # APPLY_ACTIONS, 40 bytes
ffff 0018 00002320 0007 000f 00000002 0000000000000000  # NXAST_REG_LOAD 0->in_port[0..15]
0018 0008 00000000             # DEC_NW_TTL
0001 0008 32 000000            # GOTO_TABLE 50
""")


def test_exact_bytes_of_a_goto_flow_and_a_relay_flow() -> None:
    assert flowmod.add(XID, SAMPLES[1]) == CLASSIFY_IP
    assert flowmod.add(XID, SAMPLES[2]) == RELAY


def test_exact_bytes_of_the_arp_responder_actions() -> None:
    msg = flowmod.add(XID, ARP_RESPONDER)
    actions = msg[-0xA0 + 8:]  # the APPLY_ACTIONS instruction is the last 160 bytes
    assert msg[-0xA0:-0xA0 + 8] == hexbytes("0004 00a0 00000000")
    assert actions == hexbytes("""
ffff 0018 00002320 0006 0030 0000 0000 00000406 00000206  # move eth_src -> eth_dst
0019 0010 80000806 024000000202 0000                    # set_field eth_src
0019 0010 80002a02 0002 000000000000                    # set_field arp_op=2
ffff 0018 00002320 0006 0030 0000 0000 00012206 00012406  # move arp_sha -> arp_tha
ffff 0018 00002320 0006 0020 0000 0000 00002004 00002204  # move arp_spa -> arp_tpa
0019 0010 80003006 024000000202 0000                    # set_field arp_sha
0019 0010 80002c04 0a280202 00000000                    # set_field arp_spa
0000 0010 fffffff8 0000 000000000000                    # output IN_PORT
""")


def test_deletes_and_bundle_framing_bytes() -> None:
    assert flowmod.delete_cookie(1, COOKIE_PREFIX, COOKIE_MASK) == hexbytes("""
05 0e 0038 00000001
6d72000000000000 ffff000000000000   # cookie / mask
ff 03 0000 0000 0000                # all tables, DELETE
ffffffff ffffffff ffffffff 0000 0000
0001 0004 00000000                  # empty OXM match
""")
    strict = flowmod.delete_strict(1, SAMPLES[2], COOKIE_MASK)
    assert strict[8:24] == hexbytes("6d72000000000000 ffff000000000000")
    assert strict[24:26] == hexbytes("1e 04")  # table 30, DELETE_STRICT
    assert wire.bundle_control(9, wire.BundleCtrl.COMMIT_REQUEST) == hexbytes(
        "05 21 0010 00000009  00006d72 0004 0003")
    assert wire.bundle_add(9, b"\x05\x00\x00\x08\x00\x00\x00\x09") == hexbytes(
        "05 22 0018 00000009  00006d72 0000 0003  05 00 0008 00000009")
    assert wire.hello(1) == hexbytes("05 00 0010 00000001  0001 0008 00000020")
    assert stats.aggregate_request(2, COOKIE_PREFIX, COOKIE_MASK) == hexbytes("""
05 12 0038 00000002  0002 0000 00000000   # MULTIPART_REQUEST, AGGREGATE
ff 000000 ffffffff ffffffff 00000000      # all tables, any port, any group
6d72000000000000 ffff000000000000         # cookie / mask
0001 0004 00000000                        # empty match
""")
    reply = wire.split(hexbytes("05 13 0028 00000002  0002 0000 00000000"
                                "0000000000000007 0000000000000100 0000002a 00000000"))
    assert stats.aggregate_flow_count(reply) == 42


# What ovs-ofctl's own decoder prints for our messages (OVS's ordering of fields).
OFP_PRINT = [
    "ADD table:10 priority=200,arp,arp_tpa=10.40.2.2,arp_op=1 cookie:0x6d72000300000007 "
    "actions=move:NXM_OF_ETH_SRC[]->NXM_OF_ETH_DST[],set_field:02:40:00:00:02:02->eth_src,"
    "set_field:2->arp_op,move:NXM_NX_ARP_SHA[]->NXM_NX_ARP_THA[],"
    "move:NXM_OF_ARP_SPA[]->NXM_OF_ARP_TPA[],set_field:02:40:00:00:02:02->arp_sha,"
    "set_field:10.40.2.2->arp_spa,IN_PORT",
    "ADD priority=100,ip,in_port=1000,dl_src=02:40:00:00:01:02,nw_src=10.40.1.2 "
    "cookie:0x6d72000200000001 actions=goto_table:20",
    "ADD table:30 priority=100,ip,tun_id=0x5 cookie:0x6d72000400000005 "
    "actions=load:0->NXM_OF_IN_PORT[],dec_ttl,goto_table:50",
    "ADD table:50 priority=100,tun_id=0x5 cookie:0x6d72000400000005 "
    "actions=set_field:192.168.100.2->tun_dst,output:100",
    "ADD table:20 priority=100,dl_dst=01:00:00:00:00:00/01:00:00:00:00:00 "
    "cookie:0x6d72000500000001 actions=output:1000,set_field:192.168.100.3->tun_dst,"
    "set_field:0x800001->tun_id,output:100",
    "ADD priority=0 cookie:0x6d72000100000000 actions=drop",
]


@pytest.mark.skipif(shutil.which("ovs-ofctl") is None, reason="ovs-ofctl not installed")
def test_ovs_ofctl_decodes_our_messages_as_the_flows_we_meant() -> None:
    for flow, expected in zip(SAMPLES, OFP_PRINT, strict=True):
        out = subprocess.run(["ovs-ofctl", "ofp-print", flowmod.add(7, flow).hex()],
                             capture_output=True, text=True, timeout=10, check=True).stdout
        assert out.strip() == f"OFPT_FLOW_MOD (OF1.4) (xid=0x7): {expected}"


# -- round trip -----------------------------------------------------------------------

macs = st.binary(min_size=6, max_size=6).map(lambda b: ":".join(f"{x:02x}" for x in b))
ips = st.binary(min_size=4, max_size=4).map(lambda b: ".".join(str(x) for x in b))
ports = st.integers(1, 0xFFFFFF00)


@st.composite
def matches(draw: st.DrawFn) -> Match:
    kind = draw(st.sampled_from(["any", "arp", "ip", "other"]))
    fields: dict[str, object] = {
        "in_port": draw(st.none() | ports),
        "dl_src": draw(st.none() | macs),
        "tun_id": draw(st.none() | st.integers(0, (1 << 64) - 1)),
    }
    dst = draw(st.none() | macs)
    fields["dl_dst"] = dst
    if dst is not None:
        fields["dl_dst_mask"] = draw(st.none() | macs)
    if kind == "arp":
        fields.update(dl_type=ETH_TYPE_ARP, arp_op=draw(st.none() | st.integers(0, 0xFFFF)),
                      arp_spa=draw(st.none() | ips), arp_tpa=draw(st.none() | ips),
                      arp_sha=draw(st.none() | macs))
    elif kind == "ip":
        fields.update(dl_type=ETH_TYPE_IP, nw_src=draw(st.none() | ips),
                      nw_dst=draw(st.none() | ips))
    elif kind == "other":
        fields["dl_type"] = draw(st.integers(0, 0xFFFF).filter(
            lambda t: t not in (ETH_TYPE_ARP, ETH_TYPE_IP)))
    return Match(**fields)  # type: ignore[arg-type]


plain_actions: st.SearchStrategy[Action] = st.one_of(
    ports.map(Output), st.just(OutputInPort()), st.just(ClearInPort()), st.just(DecTtl()),
    ips.map(SetTunnelDst), st.integers(0, (1 << 64) - 1).map(SetTunnelId),
    st.builds(ArpReply, macs, ips),
)


@st.composite
def flows(draw: st.DrawFn) -> Flow:
    actions: list[Action] = draw(st.lists(plain_actions, max_size=6))
    if draw(st.booleans()):
        actions.append(GotoTable(draw(st.integers(0, 254))))
    return Flow(draw(st.integers(0, 254)), draw(st.integers(0, 0xFFFF)), draw(matches()),
                tuple(actions), draw(st.integers(0, (1 << 64) - 1)))


@settings(max_examples=200, deadline=None)
@given(flow=flows(), xid=st.integers(0, 0xFFFFFFFF))
def test_decode_of_encode_is_the_same_flow(flow: Flow, xid: int) -> None:
    msg = wire.split(flowmod.add(xid, flow))
    assert (msg.version, msg.type, msg.xid) == (wire.VERSION, wire.MsgType.FLOW_MOD, xid)
    decoded = flowmod.decode(msg)
    assert decoded.command == flowmod.Command.ADD and decoded.cookie_mask == 0
    assert decoded.flow() == flow
    strict = flowmod.decode(wire.split(flowmod.delete_strict(xid, flow, COOKIE_MASK)))
    assert (strict.command, strict.table, strict.priority, strict.match) == (
        flowmod.Command.DELETE_STRICT, flow.table, flow.priority, flow.match)
    assert (strict.cookie, strict.cookie_mask) == (flow.cookie & COOKIE_MASK, COOKIE_MASK)
    wrapped = wire.split(wire.bundle_add(xid, flowmod.add(xid, flow)))
    bundle_id, flags, inner = wire.parse_bundle_add(wrapped)
    assert (bundle_id, flags, flowmod.decode(wire.split(inner)).flow()) == (
        wire.BUNDLE_ID, wire.BUNDLE_FLAGS, flow)


def test_arp_reply_lookalikes_decode_as_their_parts() -> None:
    # the move that starts an ARP reply, alone, is not one of our actions
    lone = Flow(1, 1, Match(dl_type=ETH_TYPE_ARP), (ArpReply("02:00:00:00:00:01", "1.2.3.4"),
                                                    SetTunnelId(3)), cookie(Category.BASE))
    msg = bytearray(flowmod.add(1, lone))
    assert flowmod.decode(wire.split(bytes(msg))).flow() == lone
    cut = bytes(msg[:-16 - 16 * 7 + 24])  # keep only the first move of the sequence
    with pytest.raises(MalformedMessageError):
        flowmod.decode(wire.split(struct.pack("!BBHI", 5, 14, len(cut), 1) + cut[8:]))


@pytest.mark.parametrize("bad", [
    lambda: flowmod.add(1, Flow(0, 1, Match(), (GotoTable(3),) * 1, 0))[:-1],  # truncated
    lambda: b"\x05\x0e\x00\x08\x00\x00\x00\x01",  # no body
])
def test_malformed_flow_mods_are_refused(bad: object) -> None:
    data = bad()  # type: ignore[operator]
    with pytest.raises(MalformedMessageError):
        flowmod.decode(wire.split(struct.pack("!BBHI", 5, 14, len(data), 1) + data[8:]))


# -- framing --------------------------------------------------------------------------


@settings(max_examples=100, deadline=None)
@given(bodies=st.lists(st.binary(max_size=300), max_size=8),
       cuts=st.lists(st.integers(1, 200), max_size=20))
def test_framer_reassembles_messages_however_the_stream_is_cut(
    bodies: list[bytes], cuts: list[int]
) -> None:
    stream = b"".join(wire.message(wire.MsgType.ECHO_REQUEST, i, b) for i, b in enumerate(bodies))
    framer = wire.Framer()
    got: list[wire.Message] = []
    offset = 0
    for size in [*cuts, len(stream)]:
        got += framer.feed(stream[offset:offset + size])
        offset += size
    assert [(m.xid, m.body) for m in got] == list(enumerate(bodies))
    assert framer.pending() == 0


def test_framer_refuses_a_length_below_the_header_and_holds_under_one_message() -> None:
    with pytest.raises(MalformedMessageError):
        wire.Framer().feed(b"\x05\x00\x00\x04\x00\x00\x00\x01")
    framer = wire.Framer()
    assert framer.feed(b"\x05\x02\xff\xff\x00\x00\x00\x01" + bytes(60_000)) == []
    assert framer.pending() == 60_008
    got = framer.feed(bytes(65_535 - 60_008) + wire.message(wire.MsgType.HELLO, 2)[:5])
    assert [(m.type, len(m.body)) for m in got] == [(2, 65_527)] and framer.pending() == 5
    with pytest.raises(ValueError):
        wire.message(wire.MsgType.FLOW_MOD, 1, bytes(70_000))


def test_an_action_without_an_encoding_is_a_value_error() -> None:
    # Flow refuses a goto before the end; the encoder must not fail another way
    # (the render cache turns ValueError into "no native encoding", not a crash)
    with pytest.raises(ValueError, match="no OpenFlow action encoding"):
        actions.encode_instructions((GotoTable(3), Output(1)))


def test_hello_versions_and_error_descriptions() -> None:
    ovs_hello = wire.split(bytes.fromhex("0600001000000001" "0001000800000072"))
    assert wire.hello_versions(ovs_hello) == {1, 4, 5, 6}
    assert wire.hello_versions(wire.split(b"\x04\x00\x00\x08\x00\x00\x00\x01")) == {1, 2, 3, 4}
    refused = flowmod.add(5, SAMPLES[1])[:64]
    err = wire.parse_error(wire.split(wire.message(wire.MsgType.ERROR, 5,
                                                   b"\x00\x04\x00\x03" + refused)))
    assert err.describe() == "BAD_MATCH/3 (refused FLOW_MOD)"
    assert flowmod.describe(err.data) == "ADD table=0,priority=100,cookie=0x6d72000200000001"

"""The evaluator follows OpenFlow 1.3 as OVS does, on hand-written tables."""

from __future__ import annotations

import pytest

from meshrouter.dataplane.core.evaluate import AmbiguousFlowError, CompiledTable, Packet
from meshrouter.dataplane.core.flow import (
    ClearInPort,
    DecTtl,
    Flow,
    GotoTable,
    Match,
    Output,
    OutputInPort,
    SetTunnelDst,
)
from meshrouter.dataplane.core.pipeline import ETH_TYPE_IP

MAC_A, MAC_B = "02:00:00:00:00:0a", "02:00:00:00:00:0b"


def pkt(**fields: object) -> Packet:
    base: dict[str, object] = {"in_port": 1, "eth_src": MAC_A, "eth_dst": MAC_B,
                               "eth_type": ETH_TYPE_IP, "ip_src": "10.0.0.1",
                               "ip_dst": "10.0.0.2"}
    base.update(fields)
    return Packet(**base)  # type: ignore[arg-type]


def test_highest_priority_wins_and_a_miss_drops() -> None:
    table = CompiledTable([
        Flow(0, 10, Match(), (Output(9),), 0),
        Flow(0, 20, Match(dl_dst=MAC_B), (Output(2),), 0),
    ])
    assert [e.port for e in table.process(pkt())] == [2]
    assert [e.port for e in table.process(pkt(eth_dst=MAC_A))] == [9]
    assert CompiledTable([]).process(pkt()) == []


def test_output_to_in_port_is_skipped_but_in_port_action_is_not() -> None:
    table = CompiledTable([Flow(0, 1, Match(), (Output(1), Output(2), OutputInPort()), 0)])
    assert [e.port for e in table.process(pkt(in_port=1))] == [2, 1]


def test_clear_in_port_lets_a_relay_output_to_the_tunnel() -> None:
    table = CompiledTable([
        Flow(0, 1, Match(in_port=100), (ClearInPort(), GotoTable(5)), 0),
        Flow(5, 1, Match(), (SetTunnelDst("192.168.0.9"), Output(100)), 0),
    ])
    out = table.process(pkt(in_port=100))
    assert [(e.port, e.packet.tun_dst, e.packet.in_port) for e in out] == [
        (100, "192.168.0.9", 0)]


def test_dec_ttl_kills_at_one() -> None:
    table = CompiledTable([Flow(0, 1, Match(), (DecTtl(), Output(2)), 0)])
    assert [e.packet.ttl for e in table.process(pkt(ttl=5))] == [4]
    assert table.process(pkt(ttl=1)) == []


def test_masked_multicast_match() -> None:
    table = CompiledTable([Flow(0, 1, Match(dl_dst="01:00:00:00:00:00",
                                            dl_dst_mask="01:00:00:00:00:00"), (Output(3),), 0)])
    assert len(table.process(pkt(eth_dst="ff:ff:ff:ff:ff:ff"))) == 1
    assert len(table.process(pkt(eth_dst="01:00:5e:00:00:01"))) == 1
    assert table.process(pkt(eth_dst=MAC_B)) == []


def test_equal_priority_overlap_is_an_error() -> None:
    table = CompiledTable([
        Flow(0, 5, Match(dl_dst=MAC_B), (Output(2),), 0),
        Flow(0, 5, Match(dl_src=MAC_A), (Output(3),), 0),
    ])
    with pytest.raises(AmbiguousFlowError):
        table.process(pkt())


def test_goto_must_go_forward() -> None:
    table = CompiledTable([Flow(3, 1, Match(), (Output(1),), 0),
                           Flow(0, 1, Match(), (GotoTable(3),), 0)])
    assert len(table.process(pkt(in_port=7))) == 1
    with pytest.raises(ValueError):
        CompiledTable([Flow(0, 1, Match(), (GotoTable(0),), 0)]).process(pkt())

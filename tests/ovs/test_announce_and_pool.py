"""Gratuitous ARP frames and the spare-port pool's bookkeeping (no OVS needed)."""

from __future__ import annotations

import pytest

from meshrouter.dataplane.ovs.announce import garp_frame, mac_bytes
from meshrouter.dataplane.ovs.pool import PortPool, Spare, spare_names


def test_garp_frame_is_a_broadcast_request_for_its_own_address() -> None:
    # written out by hand from RFC 826 / RFC 5227 (sender = target address)
    expected = bytes.fromhex(
        "ffffffffffff" "020000000a0b" "0806"     # Ethernet: broadcast, from the MAC, ARP
        "0001" "0800" "06" "04" "0001"           # Ethernet/IPv4, 6/4 bytes, request
        "020000000a0b" "0a280063"                # sender MAC, 10.40.0.99
        "000000000000" "0a280063"                # target MAC unknown, 10.40.0.99
    )
    assert garp_frame("02:00:00:00:0a:0b", "10.40.0.99") == expected


@pytest.mark.parametrize("mac", ["02:00:00:00:0a", "02:00:00:00:0a:0b:0c", "zz:00:00:00:00:00"])
def test_a_bad_mac_is_refused(mac: str) -> None:
    with pytest.raises(ValueError):
        mac_bytes(mac)


def test_the_pool_gives_a_spare_of_the_asked_mtu_and_counts() -> None:
    pool = PortPool(2)
    assert pool.wanted()
    pool.making.add(1003)
    pool.spares.append(Spare("mpa", "mqa", 1001, 1450, "afxdp"))
    pool.reserved.add(1004)  # an ordinary port being added: not a spare
    assert not pool.wanted() and pool.ofports() == {1001, 1003, 1004}
    assert pool.take(9000) is None  # another MTU: made the ordinary way
    spare = pool.take(1450)
    assert spare is not None and spare.ofport == 1001 and pool.take(1450) is None
    assert pool.status() == {"spare_ports": 0, "spares_made": 0, "spares_taken": 1}
    pool.making.clear()
    assert pool.wanted()  # the ordinary port does not count as a spare


def test_spare_names_fit_an_interface_name_and_pair_up() -> None:
    host, free = spare_names()
    assert len(host) <= 15 and host.startswith("mp") and free == "mq" + host[2:]
    assert spare_names()[0] != host

"""Collisions an attach must refuse: name, address, MAC (against live endpoints)."""

from __future__ import annotations

import pytest

from meshrouter.endpoints.attach_checks import check_ip_free, check_name_free, fresh_mac
from meshrouter.endpoints.model import Endpoint, mac_for
from meshrouter.errors import ConflictError
from meshrouter.names import PeerName

HERE = PeerName(0x0A0000000001)
THERE = PeerName(0x0A0000000002)


def endpoint(owner: PeerName, cid: str, ip: str, name: str = "", mac: str = "") -> Endpoint:
    return Endpoint(owner=owner, container_id=cid, mac=mac or mac_for(owner, cid, 0), ip=ip,
                    name=name, version=1, tombstone=False)


def test_a_name_used_by_another_container_on_a_peer_is_refused() -> None:
    live = [endpoint(THERE, "b", "10.0.0.2", name="web")]
    with pytest.raises(ConflictError, match="name web is already used by container b"):
        check_name_free(live, HERE, "a", "web")
    check_name_free(live, HERE, "a", "db")
    check_name_free(live, HERE, "a", None)


def test_the_same_container_may_keep_its_name_and_address() -> None:
    live = [endpoint(HERE, "a", "10.0.0.1", name="web")]
    check_name_free(live, HERE, "a", "web")
    check_ip_free(live, HERE, "a", "10.0.0.1")


def test_the_same_container_id_on_another_peer_is_another_container() -> None:
    live = [endpoint(THERE, "a", "10.0.0.1", name="web")]
    with pytest.raises(ConflictError):
        check_name_free(live, HERE, "a", "web")
    with pytest.raises(ConflictError, match=r"address 10\.0\.0\.1 is already used"):
        check_ip_free(live, HERE, "a", "10.0.0.1")


def test_a_taken_mac_is_resalted() -> None:
    first = mac_for(HERE, "a", 0)
    assert fresh_mac([], HERE, "a") == first
    live = [endpoint(THERE, "x", "10.0.0.9", mac=first)]
    assert fresh_mac(live, HERE, "a") == mac_for(HERE, "a", 1)


def test_no_free_mac_after_every_salt_is_a_conflict() -> None:
    live = [endpoint(THERE, f"x{i}", f"10.0.0.{i}", mac=mac_for(HERE, "a", i)) for i in range(8)]
    with pytest.raises(ConflictError, match="no free MAC"):
        fresh_mac(live, HERE, "a")

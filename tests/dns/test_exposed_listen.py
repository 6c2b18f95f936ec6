"""Where DNS listens for containers: the exposed host address (``meshrouter
expose``) besides the host's own listener, and the nameserver ``status dns``
gives containers.  Pure rules, then the service with real sockets on a
loopback address of its own (port 53, as containers need)."""

from __future__ import annotations

import random
import socket
from pathlib import Path
from typing import Any

import pytest
import trio

from meshrouter.dns.settings import DnsSettings, container_nameserver
from tests.dns.test_service import make

pytest.importorskip("dns", reason="dnspython (in the test extra) is not installed")
import dns.message
import dns.query

pytestmark = pytest.mark.timeout(60)


@pytest.mark.parametrize(("listening", "exposed", "expected"), [
    ([("127.0.0.1", 53), ("10.32.0.1", 53)], "10.32.0.1", "10.32.0.1"),
    ([("127.0.0.1", 53)], "10.32.0.1", None),             # exposed, listener not up (yet)
    ([("127.0.0.1", 53)], None, None),                    # loopback: no container reaches it
    ([("0.0.0.0", 53)], "10.32.0.1", "10.32.0.1"),        # a wildcard covers the exposed one
    ([("0.0.0.0", 53)], None, None),
    ([("172.17.0.1", 53)], None, "172.17.0.1"),           # --dns-listen the user's bridge
    ([("172.17.0.1", 53)], "10.32.0.1", "172.17.0.1"),
    ([("0.0.0.0", 5353)], "10.32.0.1", None),             # resolv.conf has no port
    ([("10.32.0.1", 5353)], "10.32.0.1", None),
    ([("::", 53)], "10.32.0.1", None),                    # an IPv6 wildcard is not v4's
])
def test_the_nameserver_for_containers(listening: list[tuple[str, int]], exposed: str | None,
                                        expected: str | None) -> None:
    assert container_nameserver(listening, exposed) == expected


def test_the_exposed_address_is_served_only_by_default() -> None:
    assert DnsSettings().container_endpoints("10.32.0.1") == [("10.32.0.1", 53)]
    assert DnsSettings().container_endpoints(None) == []
    assert DnsSettings(listen="0.0.0.0:53").container_endpoints("10.32.0.1") == []
    assert DnsSettings(enabled=False).container_endpoints("10.32.0.1") == []
    assert DnsSettings().listen_endpoint() == ("127.0.0.1", 53)


def own_loopback() -> str:
    """A loopback address no other test uses (all of 127/8 is ours to bind)."""
    rng = random.Random()
    return f"127.{rng.randrange(1, 255)}.{rng.randrange(1, 255)}.{rng.randrange(2, 254)}"


def ask(server: str, name: str, tcp: bool = False) -> Any:
    query = dns.message.make_query(name, "A")
    return (dns.query.tcp if tcp else dns.query.udp)(query, server, port=53, timeout=3)


def can_bind(address: str) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.bind((address, 53))
        except OSError:
            return False
    return True


def test_exposing_adds_a_port_53_listener_for_containers_and_hiding_removes_it(
        tmp_path: Path) -> None:
    address = own_loopback()
    if not can_bind(address):
        pytest.skip(f"cannot bind {address}:53 here (not root?)")
    resolv = tmp_path / "resolv.conf"
    resolv.write_text(f"nameserver {address}\n")  # the host pointed at us: never forwarded to
    settings = DnsSettings(host_listen="127.0.0.1:0", resolv_conf=str(resolv),
                           upstream_timeout=0.3)
    service, _gossip, _ = make(settings)
    seen: dict[str, Any] = {}

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            await nursery.start(service.run)
            service.register("c1", "web", "10.32.0.5")
            seen["before"] = service.summary()["nameserver"], service.report()["nameserver_error"]
            await service.set_exposed(f"{address}/8")
            for tcp in (False, True):
                reply = await trio.to_thread.run_sync(ask, address, "web.mesh.local", tcp)
                seen[f"tcp={tcp}"] = [rd.address for rr in reply.answer for rd in rr]
            reply = await trio.to_thread.run_sync(ask, address, "example.com")
            seen["outside"] = reply.rcode()
            seen["exposed"] = service.summary()["nameserver"], service.report()
            await service.set_exposed(None)
            seen["freed"] = can_bind(address)
            seen["hidden"] = service.summary()["nameserver"]
            nursery.cancel_scope.cancel()

    trio.run(main)
    assert seen["before"] == ("", "the host is not exposed on the overlay (`meshrouter expose`)")
    assert seen["tcp=False"] == seen["tcp=True"] == ["10.32.0.5"]
    assert seen["outside"] == dns.rcode.SERVFAIL  # resolv.conf names only ourselves
    nameserver, report = seen["exposed"]
    assert nameserver == address and report["exposed"] == address
    assert f"{address}:53" in report["listening"] and report["nameserver_error"] == ""
    assert report["upstream_error"] == f"no usable nameserver in {resolv}"
    assert report["listen"].startswith("127.0.0.1:")  # the host's own listener stays primary
    assert seen["freed"] and seen["hidden"] == ""


def test_a_taken_exposed_port_is_reported_and_retried() -> None:
    address = own_loopback()
    if not can_bind(address):
        pytest.skip(f"cannot bind {address}:53 here (not root?)")
    service, _gossip, _ = make(DnsSettings(host_listen="127.0.0.1:0"))
    seen: dict[str, Any] = {}

    async def main() -> None:
        holder = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        holder.bind((address, 53))
        async with trio.open_nursery() as nursery:
            await nursery.start(service.run)
            await service.set_exposed(f"{address}/8")
            seen["taken"] = service.summary()["nameserver"], service.report()["nameserver_error"]
            holder.close()
            service.wake()  # the maintenance round retries the bind
            with trio.fail_after(5):
                while not service.summary()["nameserver"]:  # noqa: ASYNC110 - polls a status
                    await trio.sleep(0.05)
            service.register("c1", "web", "10.32.0.5")
            reply = await trio.to_thread.run_sync(ask, address, "web.mesh.local")
            seen["answer"] = [rd.address for rr in reply.answer for rd in rr]
            nursery.cancel_scope.cancel()

    trio.run(main)
    nameserver, error = seen["taken"]
    assert nameserver == "" and f"cannot listen on {address}:53" in error
    assert seen["answer"] == ["10.32.0.5"]


def test_an_explicit_listen_address_is_the_whole_choice() -> None:
    address = own_loopback()
    service, _gossip, _ = make(DnsSettings(listen="127.0.0.1:0"))
    seen: dict[str, Any] = {}

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            await nursery.start(service.run)
            await service.set_exposed(f"{address}/8")
            seen["servers"] = len(service.servers)
            seen["summary"] = service.summary()
            nursery.cancel_scope.cancel()

    trio.run(main)
    assert seen["servers"] == 1 and seen["summary"]["nameserver"] == ""
    assert not service.wants_host_address() and DnsSettings().enabled

"""The trio DNS server on 127.0.0.1 with real clients: dnspython (and dig where installed).

A fake upstream on 127.0.0.1 answers outside names, so forwarding is tested
without leaving the host.  Blocking clients run in threads.
"""

from __future__ import annotations

import random
import shutil
import socket
import subprocess
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
import trio

from meshrouter.dns.access import ClientFilter
from meshrouter.dns.resolver import Resolver
from meshrouter.dns.server import DnsServer
from meshrouter.dns.view import NameView

pytest.importorskip("dns", reason="dnspython (in the test extra) is not installed")
import dns.flags
import dns.message
import dns.query
import dns.rcode
import dns.rdatatype

pytestmark = pytest.mark.timeout(60)

UPSTREAM_ANSWER = "192.0.2.77"
VIEW = NameView.build(
    "mesh.local.",
    [("web.mesh.local.", 0x0A200001), ("web.mesh.local.", 0x0A200002),
     ("db.mesh.local.", 0x0A200009)]
    + [("big.mesh.local.", 0x0A300000 + i) for i in range(60)],
    1,
)


class RefuseAll(ClientFilter):
    def allows(self, source: str) -> bool:
        return False


async def fake_upstream(*, task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED) -> None:
    """UDP + TCP on one port: answers every A query with UPSTREAM_ANSWER."""
    udp = trio.socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    await udp.bind(("127.0.0.1", 0))
    port = udp.getsockname()[1]
    listeners = await trio.open_tcp_listeners(port, host="127.0.0.1")

    def answer(data: bytes) -> bytes:
        query = dns.message.from_wire(data)
        reply = dns.message.make_response(query)
        reply.answer.append(dns.rrset.from_text(query.question[0].name, 60, "IN", "A",
                                                UPSTREAM_ANSWER))
        return reply.to_wire()

    async def serve_udp() -> None:
        while True:
            data, addr = await udp.recvfrom(4096)
            await udp.sendto(answer(data), addr)

    async def serve_tcp(stream: trio.SocketStream) -> None:
        async with stream:
            header = await stream.receive_some(2)
            data = await stream.receive_some(int.from_bytes(header, "big"))
            reply = answer(data)
            await stream.send_all(len(reply).to_bytes(2, "big") + reply)

    with udp:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(serve_udp)
            nursery.start_soon(trio.serve_listeners, serve_tcp, listeners)
            task_status.started(port)


def run_with_server(body: Callable[[int, DnsServer], Awaitable[None]], *,
                    upstreams: list[tuple[str, int]] | None = None, with_upstream: bool = True,
                    client_filter: ClientFilter | None = None, timeout: float = 0.5) -> None:
    async def main() -> None:
        async with trio.open_nursery() as nursery:
            chosen = list(upstreams or [])
            if with_upstream:
                chosen.append(("127.0.0.1", await nursery.start(fake_upstream)))

            async def current() -> list[tuple[str, int]]:
                return chosen

            server = DnsServer(
                Resolver("mesh.local", reverse_networks=("10.32.0.0/12",)), lambda: VIEW,
                random.Random(1), listen=("127.0.0.1", 0), upstreams=current, timeout=timeout,
                client_filter=client_filter or ClientFilter([]))
            host, port = await nursery.start(server.run)
            assert host == "127.0.0.1" and port > 0
            await body(port, server)
            nursery.cancel_scope.cancel()

    trio.run(main)


async def udp(port: int, name: str, qtype: str = "A", **kwargs: Any) -> dns.message.Message:
    query = dns.message.make_query(name, qtype, **kwargs)
    return await trio.to_thread.run_sync(
        lambda: dns.query.udp(query, "127.0.0.1", port=port, timeout=3, ignore_trailing=True))


async def tcp(port: int, name: str, qtype: str = "A") -> dns.message.Message:
    query = dns.message.make_query(name, qtype)
    return await trio.to_thread.run_sync(
        lambda: dns.query.tcp(query, "127.0.0.1", port=port, timeout=3))


def addresses(reply: dns.message.Message) -> set[str]:
    return {rd.address for rrset in reply.answer for rd in rrset
            if rrset.rdtype == dns.rdatatype.A}


def test_udp_and_tcp_answer_names_with_every_address() -> None:
    async def body(port: int, server: DnsServer) -> None:
        for ask in (udp, tcp):
            reply = await ask(port, "WEB.mesh.local")
            assert reply.rcode() == dns.rcode.NOERROR
            assert reply.flags & dns.flags.AA
            assert addresses(reply) == {"10.32.0.1", "10.32.0.2"}
        assert server.stats.responses["NOERROR"] == 2

    run_with_server(body)


def test_nxdomain_nodata_and_ptr() -> None:
    async def body(port: int, server: DnsServer) -> None:
        reply = await udp(port, "nope.mesh.local")
        assert reply.rcode() == dns.rcode.NXDOMAIN and reply.authority
        reply = await udp(port, "web.mesh.local", "AAAA")
        assert reply.rcode() == dns.rcode.NOERROR and not reply.answer and reply.authority
        reply = await udp(port, "9.0.32.10.in-addr.arpa", "PTR")
        assert [str(rd) for rrset in reply.answer for rd in rrset] == ["db.mesh.local."]
        assert server.stats.responses == {"NXDOMAIN": 1, "NODATA": 1, "NOERROR": 1}

    run_with_server(body)


def test_truncation_over_udp_then_the_whole_answer_over_tcp_and_edns0() -> None:
    async def body(port: int, server: DnsServer) -> None:
        reply = await udp(port, "big.mesh.local")
        assert reply.flags & dns.flags.TC and not reply.answer
        reply = await tcp(port, "big.mesh.local")
        assert len(addresses(reply)) == 60 and not reply.flags & dns.flags.TC
        reply = await udp(port, "big.mesh.local", use_edns=0, payload=4096)
        assert len(addresses(reply)) == 60 and not reply.flags & dns.flags.TC
        assert reply.edns == 0
        assert server.stats.truncated == 1

    run_with_server(body)


def test_outside_names_are_forwarded_over_udp_and_tcp_past_dead_upstreams() -> None:
    dead = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    dead.bind(("127.0.0.1", 0))  # bound but never answers: a timeout
    try:
        async def body(port: int, server: DnsServer) -> None:
            reply = await udp(port, "example.com")
            assert addresses(reply) == {UPSTREAM_ANSWER}
            reply = await tcp(port, "example.com")
            assert addresses(reply) == {UPSTREAM_ANSWER}
            assert server.stats.forwarded == 2 and server.stats.forward_failures == 0

        run_with_server(body, upstreams=[("127.0.0.1", dead.getsockname()[1])])
    finally:
        dead.close()


def test_servfail_when_every_upstream_fails() -> None:
    async def body(port: int, server: DnsServer) -> None:
        reply = await udp(port, "example.com")
        assert reply.rcode() == dns.rcode.SERVFAIL
        assert server.stats.forward_failures == 1

    run_with_server(body, upstreams=[("127.0.0.1", 9)], with_upstream=False, timeout=0.3)


def test_garbage_is_dropped_and_counted_and_the_server_keeps_answering() -> None:
    async def body(port: int, server: DnsServer) -> None:
        with trio.socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            for blob in (b"", b"\x00", b"\xff" * 40, b"\x12\x34" + b"\x01" * 100):
                await sock.sendto(blob, ("127.0.0.1", port))
        stream = await trio.open_tcp_stream("127.0.0.1", port)
        async with stream:
            await stream.send_all(b"\x00\x05hello")
            assert await stream.receive_some(10) == b""  # closed on garbage
        reply = await udp(port, "web.mesh.local")
        assert addresses(reply) == {"10.32.0.1", "10.32.0.2"}
        assert sum(server.stats.dropped.values()) == 5, server.stats.dropped

    run_with_server(body)


def test_clients_from_elsewhere_are_refused() -> None:
    async def body(port: int, server: DnsServer) -> None:
        reply = await udp(port, "web.mesh.local")
        assert reply.rcode() == dns.rcode.REFUSED and not reply.answer
        assert server.stats.dropped["client not allowed"] == 1

    run_with_server(body, client_filter=RefuseAll([]))


def test_client_filter_allows_this_host_and_the_overlay_only() -> None:
    allowed = ClientFilter(["10.32.0.0/12"], ["192.168.5.5"])
    assert allowed.allows("127.0.0.1") and allowed.allows("::1")
    assert allowed.allows("10.40.1.2") and allowed.allows("192.168.5.5")
    assert allowed.allows("::ffff:10.32.0.9")
    assert not allowed.allows("10.48.0.1") and not allowed.allows("8.8.8.8")
    assert not allowed.allows("not an address")


@pytest.mark.skipif(shutil.which("dig") is None, reason="dig is not installed")
def test_dig_sees_answers_truncation_and_nxdomain() -> None:
    def dig(port: int, *args: str) -> str:
        return subprocess.run(["dig", "@127.0.0.1", "-p", str(port), "+time=2", "+tries=1",
                               *args], capture_output=True, text=True, timeout=10).stdout

    async def body(port: int, server: DnsServer) -> None:
        out = await trio.to_thread.run_sync(lambda: dig(port, "+short", "web.mesh.local"))
        assert sorted(out.split()) == ["10.32.0.1", "10.32.0.2"]
        out = await trio.to_thread.run_sync(lambda: dig(port, "nope.mesh.local"))
        assert "status: NXDOMAIN" in out and "SOA" in out
        out = await trio.to_thread.run_sync(
            lambda: dig(port, "+ignore", "+noedns", "big.mesh.local"))
        assert "flags: qr aa tc" in out
        out = await trio.to_thread.run_sync(lambda: dig(port, "+noedns", "big.mesh.local"))
        assert out.count("IN\tA\t10.48.0.") == 60  # dig retried over TCP
        out = await trio.to_thread.run_sync(lambda: dig(port, "-x", "10.32.0.9", "+short"))
        assert out.split() == ["db.mesh.local."]

    run_with_server(body)


def test_an_internal_error_costs_one_packet_not_the_server() -> None:
    async def body(port: int, server: DnsServer) -> None:
        real = server.resolver.resolve
        calls = [0]

        def broken(*args: Any, **kwargs: Any) -> Any:
            calls[0] += 1
            if calls[0] == 1:
                raise KeyError("planted")
            return real(*args, **kwargs)

        server.resolver.resolve = broken  # type: ignore[method-assign]
        with trio.socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            await sock.sendto(dns.message.make_query("web.mesh.local", "A").to_wire(),
                              ("127.0.0.1", port))
        reply = await udp(port, "web.mesh.local")
        assert addresses(reply) == {"10.32.0.1", "10.32.0.2"}
        assert server.stats.dropped["internal error"] == 1

    run_with_server(body)

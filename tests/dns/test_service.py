"""DnsService with a stand-in router context: verbs, API handlers, state file,
broadcasts, status, and its server on 127.0.0.1."""

from __future__ import annotations

import random
from typing import Any

import pytest
import trio
import trio.testing

from meshrouter.dns.core import DnsCore
from meshrouter.dns.gossiper import CHANNEL
from meshrouter.dns.records import DnsRecords, RecordKey
from meshrouter.dns.service import STATE_KEY, DnsService
from meshrouter.dns.settings import DnsSettings, is_self, parse_endpoint, parse_resolv_conf
from meshrouter.errors import ConfigError, InvalidRequestError, NotFoundError
from meshrouter.gossip.core import GossipCore
from meshrouter.names import PeerName
from meshrouter.node.datapath import NullDatapath
from meshrouter.node.service import ApiRequest, ServiceContext
from meshrouter.storage import MemoryStorage
from meshrouter.wire.messages import BroadcastMsg

pytest.importorskip("dns", reason="dnspython (in the test extra) is not installed")
import dns.message
import dns.query

pytestmark = pytest.mark.timeout(60)
ME, PEER = PeerName(0x10), PeerName(0x20)


class FakeTopology:
    def __init__(self) -> None:
        self.version = 1
        self.known = {ME, PEER}

    def __contains__(self, name: object) -> bool:
        return name in self.known


class FakeIpam:
    name = "ipam"

    def lookup(self, container: str) -> list[str]:
        return ["10.32.0.44"] if container == "known" else []


def make(settings: DnsSettings | None = None, storage: MemoryStorage | None = None,
         reachable: set[PeerName] | None = None) -> tuple[DnsService, GossipCore, Any]:
    service = DnsService(settings or DnsSettings(enabled=False), local_addresses=set)
    gossip = GossipCore(ME)
    gossip.neighbour_up(PEER)
    while gossip.pop_outgoing(PEER) is not None:
        pass
    topology = FakeTopology()
    context = ServiceContext(
        name=ME, uid=1, nickname="me", label="me", gossip=gossip,
        storage=storage or MemoryStorage(), rng=random.Random(0),
        topology=topology, datapath=NullDatapath(),  # type: ignore[arg-type]
        reachable=lambda: reachable if reachable is not None else {ME, PEER},
        peer_address=lambda p: None, stop_router=lambda: None, leave_mesh=lambda: None,
        drain_gossip=_no_drain, services=lambda: [FakeIpam(), service],  # type: ignore[list-item]
    )
    service.attach(context)
    return service, gossip, topology


async def _no_drain(limit: float) -> None:
    return None


def broadcasts(gossip: GossipCore) -> list[DnsRecords]:
    found = []
    while (msg := gossip.pop_outgoing(PEER)) is not None:
        if isinstance(msg, BroadcastMsg) and msg.channel == CHANNEL:
            found.append(DnsRecords.decode(msg.payload))
    return found


def run(fn: Any) -> Any:
    return trio.run(fn)


def test_register_saves_then_broadcasts_and_detach_tombstones() -> None:
    async def main() -> None:
        storage = MemoryStorage()
        service, gossip, _topology = make(storage=storage)
        assert service.register("c1", "Web", "10.32.0.5") == "web.mesh.local."
        assert STATE_KEY in storage.blobs
        (sent,) = broadcasts(gossip)
        assert len(sent) == 1
        assert service.lookup("web") == ["10.32.0.5"]
        assert service.unregister_container("c1") == ["web.mesh.local."]
        (sent,) = broadcasts(gossip)
        assert next(iter(sent.owners[ME].records.values())).tombstone
        assert service.lookup("web") == []
        # A restart from the same storage publishes the same (no) records.
        again, _, _ = make(storage=storage)
        again.load()
        assert again.core.counter == 2 and again.core.mine() == []

    run(main)


def test_api_add_by_address_or_container_remove_and_lookup() -> None:
    async def main() -> None:
        service, _gossip, _ = make()
        routes = {(r.method, r.path): r.handler for r in service.api_routes()}
        add = routes[("POST", "/dns")]
        out = await add(ApiRequest({}, body={"name": "db", "address": "10.32.0.9"}))
        assert out == {"name": "db.mesh.local.", "addresses": ["10.32.0.9"]}
        out = await add(ApiRequest({}, body={"name": "db", "container_id": "known"}))
        assert out["addresses"] == ["10.32.0.44"]
        with pytest.raises(NotFoundError):
            await add(ApiRequest({}, body={"name": "db", "container_id": "unknown"}))
        with pytest.raises(InvalidRequestError):
            await add(ApiRequest({}, body={"name": "db"}))
        with pytest.raises(InvalidRequestError):
            await add(ApiRequest({}, body={"name": "bad name!", "address": "10.32.0.9"}))
        with pytest.raises(InvalidRequestError):
            await add(ApiRequest({}, body={"name": "db", "address": "10.32.0.999"}))
        with pytest.raises(InvalidRequestError):
            await add(ApiRequest({}, body={"name": "db.example.com.", "address": "10.32.0.9"}))
        lookup = routes[("GET", "/dns/{name}")]
        out = await lookup(ApiRequest({"name": "DB.mesh.local"}))
        assert out == {"name": "db.mesh.local.", "addresses": ["10.32.0.9", "10.32.0.44"]}
        remove = routes[("DELETE", "/dns/{name}")]
        out = await remove(ApiRequest({"name": "db"}, query={"address": "10.32.0.9"}))
        assert out["removed"] == 1 and [r["address"] for r in out["records"]] == ["10.32.0.9"]
        assert service.lookup("db") == ["10.32.0.44"]
        await remove(ApiRequest({"name": "db"}))
        with pytest.raises(NotFoundError):
            await lookup(ApiRequest({"name": "db"}))
        with pytest.raises(NotFoundError):
            await remove(ApiRequest({"name": "db"}))

    run(main)


def test_status_lists_records_by_name_with_owner_and_state() -> None:
    async def main() -> None:
        reachable = {ME, PEER}
        service, _gossip, topology = make(reachable=reachable)
        service.register("c1", "web", "10.32.0.5")
        peer = DnsCore(PEER, "mesh.local.")
        peer.add(RecordKey("web.mesh.local.", 0x0A200006, "c2"), 0.0)
        service.core.receive(peer.take_broadcast() or DnsRecords())
        report = await service.api_routes()[3].handler(ApiRequest({}))
        rows = report["records"]["web.mesh.local."]
        assert [(r["address"], r["state"]) for r in rows] == [
            ("10.32.0.5", "live"), ("10.32.0.6", "live")]
        assert report["domain"] == "mesh.local." and report["listen"] == "disabled"
        reachable.discard(PEER)
        topology.version += 1
        assert service.lookup("web") == ["10.32.0.5"]
        rows = service.report()["records"]["web.mesh.local."]
        assert rows[1]["state"] == "unreachable"

    run(main)


def test_service_serves_on_its_listen_address_and_counts_by_rcode() -> None:
    async def main() -> None:
        settings = DnsSettings(listen="127.0.0.1:0", upstreams=("127.0.0.1:9",),
                               upstream_timeout=0.2)
        service, _gossip, _ = make(settings)
        async with trio.open_nursery() as nursery:
            await nursery.start(service.run)
            service.register("c1", "web", "10.32.0.5")
            assert service.server is not None and service.server.bound is not None
            port = service.server.bound[1]

            def ask(name: str) -> dns.message.Message:
                query = dns.message.make_query(name, "A")
                return dns.query.udp(query, "127.0.0.1", port=port, timeout=3)

            reply = await trio.to_thread.run_sync(ask, "web.mesh.local")
            assert [rd.address for rr in reply.answer for rd in rr] == ["10.32.0.5"]
            await trio.to_thread.run_sync(ask, "nope.mesh.local")
            await trio.to_thread.run_sync(ask, "example.com")  # upstream is dead
            counters = service.report()["counters"]["responses"]
            assert counters == {"NOERROR": 1, "NXDOMAIN": 1, "SERVFAIL": 1}
            assert service.summary()["listen"] == f"127.0.0.1:{port}"
            assert service.report()["upstreams"] == ["127.0.0.1:9"]
            nursery.cancel_scope.cancel()

    run(main)


def test_an_explicit_listen_address_that_is_taken_stops_the_router_with_a_reason() -> None:
    async def main() -> None:
        holder = trio.socket.socket(type=trio.socket.SOCK_DGRAM)
        await holder.bind(("127.0.0.1", 0))
        port = holder.getsockname()[1]
        service, _gossip, _ = make(DnsSettings(listen=f"127.0.0.1:{port}"))
        with pytest.raises(ConfigError, match=r"--dns-listen.*in use"):
            await service.run()
        holder.close()

    run(main)


def test_settings_parse_and_refuse_with_reasons() -> None:
    assert DnsSettings(domain="Weave.Local").domain == "weave.local."
    for bad in (dict(domain="bad domain"), dict(ttl=-1), dict(upstreams=("dns.google",)),
                dict(listen="1.2.3.4:99999"), dict(overlay_networks=("10.0.0.0/40",))):
        with pytest.raises(ConfigError):
            DnsSettings(**bad)  # type: ignore[arg-type]
    assert parse_endpoint("[::1]:5353", 53, what="x") == ("::1", 5353)
    assert parse_endpoint("10.0.0.1", 53, what="x") == ("10.0.0.1", 53)


def test_resolv_conf_nameservers_in_order_without_ourselves() -> None:
    text = """# comment
search example.com
nameserver 127.0.0.1
nameserver 10.0.0.2 # trailing
nameserver fe80::1%eth0
nameserver not-an-ip
nameserver 10.0.0.2
options ndots:5
"""
    wildcard = lambda e: is_self(e, ("0.0.0.0", 53), {"10.0.0.2"})  # noqa: E731
    assert parse_resolv_conf(text, is_self=wildcard) == [("fe80::1", 53)]
    assert parse_resolv_conf(text) == [("127.0.0.1", 53), ("10.0.0.2", 53), ("fe80::1", 53)]
    assert is_self(("127.0.0.53", 53), ("0.0.0.0", 53), set())
    assert not is_self(("127.0.0.53", 53), ("0.0.0.0", 5353), set())
    assert is_self(("127.0.0.1", 5353), ("127.0.0.1", 5353), set())
    assert not is_self(("127.0.0.2", 5353), ("127.0.0.1", 5353), set())


def test_upstreams_are_read_from_resolv_conf_and_reread_after_it_changes(tmp_path: Any) -> None:
    from meshrouter.dns.server import UpstreamSource

    conf = tmp_path / "resolv.conf"
    conf.write_text("nameserver 10.0.0.2\nnameserver 127.0.0.1\n")

    async def main() -> None:
        source = UpstreamSource([], str(conf), lambda e: e[0] == "127.0.0.1")
        assert await source.current() == [("10.0.0.2", 53)]
        conf.write_text("nameserver 10.0.0.3\n")
        assert await source.current() == [("10.0.0.2", 53)]  # re-read at most every 5 s
        await trio.sleep(5)
        assert await source.current() == [("10.0.0.3", 53)]
        conf.unlink()
        await trio.sleep(5)
        assert await source.current() == [("10.0.0.3", 53)] and "cannot read" in source.error
        given = UpstreamSource([("10.9.9.9", 5353)], str(conf), lambda e: False)
        assert await given.current() == [("10.9.9.9", 5353)]

    trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))

"""OvsDatapath in real namespaces with real OVS (userspace datapath), hand-written flows.

Each test builds its own lab (2-3 host namespaces, each with its own
ovsdb-server + ovs-vswitchd started by the OvsDatapath under test) and removes
it, even on failure (the ``lab`` fixture).  Reachability is judged by the
kernel's own ping and a TCP transfer inside the container namespaces.
"""

from __future__ import annotations

import os
import signal
import subprocess
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest
import trio

from meshrouter.dataplane import netlink
from meshrouter.dataplane.ovs import OvsDatapath
from meshrouter.errors import ConflictError, InvalidRequestError, NotFoundError
from meshrouter.node.datapath import PortRequest
from tests.integration.flows import lab_flows
from tests.integration.lab import Container, Host, Lab, tcp_transfer

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]

Body = Callable[[list[OvsDatapath], trio.Nursery], Awaitable[None]]


def run_lab(lab: Lab, hosts: list[Host], body: Body, **settings: object) -> None:
    """Start one OvsDatapath per host, run ``body``, stop them (which restores the underlay)."""

    async def main() -> None:
        dps = [OvsDatapath(h.settings(**settings)) for h in hosts]
        async with trio.open_nursery() as nursery:
            for dp in dps:
                await nursery.start(dp.run)
            await body(dps, nursery)
            nursery.cancel_scope.cancel()

    trio.run(main)


async def attach_all(dps: list[OvsDatapath], hosts: list[Host]) -> dict[str, int]:
    ports: dict[str, int] = {}
    for dp, host in zip(dps, hosts, strict=True):
        for c in host.containers:
            port = await dp.attach_port(PortRequest(c.name, c.ns, "eth0", c.mac, f"{c.ip}/16"))
            ports[c.name] = port.port
    return ports


async def ping(a: Container, b: Container, count: int = 1) -> bool:
    return await trio.to_thread.run_sync(lambda: a.ping(b, count=count))


async def eventually(check: Callable[[], Awaitable[bool]], seconds: float = 20) -> bool:
    """Poll ``check`` (an outside observation: ping, a dump) until true or timeout."""
    with trio.move_on_after(seconds):
        while True:
            if await check():
                return True
            await trio.sleep(0.2)
    return False


def priority(pid: int) -> tuple[int, str]:
    """(the nice of ``pid``, the nice of its autogroup; "" where there are none)."""
    group = Path(f"/proc/{pid}/autogroup")
    text = group.read_text().split() if group.exists() else []
    return os.getpriority(os.PRIO_PROCESS, pid), text[-1] if text else ""


def test_two_hosts_ping_tcp_and_clean_exit(lab: Lab) -> None:
    hosts = [lab.add_host(), lab.add_host()]
    for h in hosts:
        lab.add_container(h)
        lab.add_container(h)
    containers = [c for h in hosts for c in h.containers]

    async def body(dps: list[OvsDatapath], nursery: trio.Nursery) -> None:
        ports = await attach_all(dps, hosts)
        for dp, h in zip(dps, hosts, strict=True):
            await dp.apply(lab_flows(h, containers, ports))
            assert dp.health().ok and dp.status()["flows"] == len(lab_flows(h, containers, ports))
        for a in containers:
            for b in containers:
                if a is not b:
                    assert await ping(a, b), f"{a.name} -> {b.name}"
        sent, got = await trio.to_thread.run_sync(
            lambda: tcp_transfer(containers[0], containers[3], 10 * 1024 * 1024))
        assert sent == got and sent.startswith(str(10 * 1024 * 1024))
        # the underlay address now lives on the underlay bridge's LOCAL port
        assert hosts[0].ip in hosts[0].exec("ip", "-br", "addr", "show", "mr-phy")
        # our vswitchd runs at nice -10, as ovs-ctl starts it, and so does its
        # session's scheduling group where the kernel groups by session
        pid = hosts[0].pid("ovs-vswitchd")
        assert pid is not None
        nice, group = await trio.to_thread.run_sync(priority, pid)
        assert nice == -10 and group in ("", "-10"), (nice, group)

    run_lab(lab, hosts, body)
    # stopped: our daemons are gone and ul0 has its address back
    assert not lab.our_pids()
    assert hosts[0].ip in hosts[0].exec("ip", "-br", "addr", "show", "ul0")


def test_relay_through_a_middle_host_when_the_underlay_is_blocked(lab: Lab) -> None:
    hosts = [lab.add_host() for _ in range(3)]
    c1, _, c3 = (lab.add_container(h) for h in hosts)
    containers = [h.containers[0] for h in hosts]
    h1, h2, h3 = hosts

    async def body(dps: list[OvsDatapath], nursery: trio.Nursery) -> None:
        ports = await attach_all(dps, hosts)
        for dp, h in zip(dps, hosts, strict=True):
            await dp.apply(lab_flows(h, containers, ports))
        assert await ping(c1, c3)
        lab.block(h1, h3)
        assert not await ping(c1, c3, count=2), "the block must cut the direct path"
        relay = {(1, 3): h2, (3, 1): h2}
        for dp, h in zip(dps, hosts, strict=True):
            await dp.apply(lab_flows(h, containers, ports, relay))
            assert dp.last_apply["kind"] == "delta"
        assert await eventually(lambda: ping(c1, c3), 10)
        assert await ping(c3, c1)
        assert await ping(c1, containers[1])

    run_lab(lab, hosts, body)


def tunnel_neighbours(host: Host) -> str:
    """OVS's own tunnel neighbour cache on ``host`` (NOTES P3)."""
    return host.ovs("ovs-appctl", "-t", "ovs-vswitchd", "tnl/arp/show")


def test_vswitchd_killed_degrades_then_restores_connectivity(lab: Lab) -> None:
    hosts = [lab.add_host(), lab.add_host()]
    c1, c2 = (lab.add_container(h) for h in hosts)

    async def body(dps: list[OvsDatapath], nursery: trio.Nursery) -> None:
        ports = await attach_all(dps, hosts)
        for dp, h in zip(dps, hosts, strict=True):
            await dp.apply(lab_flows(h, [c1, c2], ports))
        # the apply itself gave OVS the peer's underlay MAC, so no first packet is lost
        assert hosts[1].ip in tunnel_neighbours(hosts[0])
        assert hosts[0].ip in tunnel_neighbours(hosts[1])
        assert await ping(c1, c2)
        pid = hosts[0].pid("ovs-vswitchd")
        assert pid is not None
        os.kill(pid, signal.SIGKILL)

        async def degraded() -> bool:
            return not dps[0].health().ok

        assert await eventually(degraded, 5)
        assert any("ovs-vswitchd" in fault for fault in dps[0].status()["recent_faults"])

        async def healthy() -> bool:
            return dps[0].health().ok

        assert await eventually(healthy, 30), dps[0].health().reason
        assert hosts[0].pid("ovs-vswitchd") != pid
        # the new vswitchd's empty cache was refilled though the kernel, which still
        # knows the peer, sent no ARP request that OVS could have snooped
        assert hosts[1].ip in tunnel_neighbours(hosts[0])
        flows = hosts[0].ovs("ovs-ofctl", "-O", "OpenFlow13", "dump-flows", "mr-int",
                             "--no-stats").strip().splitlines()
        assert len(flows) == len(lab_flows(hosts[0], [c1, c2], ports))
        assert await eventually(lambda: ping(c1, c2), 15)
        assert await ping(c2, c1)

    run_lab(lab, hosts, body)


def test_ovsdb_server_killed_is_restarted_and_the_table_kept(lab: Lab) -> None:
    hosts = [lab.add_host(), lab.add_host()]
    c1, c2 = (lab.add_container(h) for h in hosts)

    async def body(dps: list[OvsDatapath], nursery: trio.Nursery) -> None:
        ports = await attach_all(dps, hosts)
        for dp, h in zip(dps, hosts, strict=True):
            await dp.apply(lab_flows(h, [c1, c2], ports))
        pid = hosts[0].pid("ovsdb-server")
        assert pid is not None
        os.kill(pid, signal.SIGKILL)

        async def restarted() -> bool:
            new = hosts[0].pid("ovsdb-server")
            return dps[0].health().ok and new is not None and new != pid

        assert await eventually(restarted, 20), dps[0].health().reason
        assert any("ovsdb-server" in f for f in dps[0].status()["recent_faults"])
        assert await eventually(lambda: ping(c1, c2), 10)
        # the database file (and so the port records) survived the restart
        assert sorted(dps[0].ports()) == [c1.name]

    run_lab(lab, hosts, body)


def test_namespace_deleted_under_us_is_reported_and_nothing_crashes(lab: Lab) -> None:
    host = lab.add_host()
    doomed, kept = lab.add_container(host), lab.add_container(host)
    lost: list[str] = []

    async def main() -> None:
        dp = OvsDatapath(host.settings(), on_port_lost=lost.append)
        async with trio.open_nursery() as nursery:
            await nursery.start(dp.run)
            ports = await attach_all([dp], [host])
            await dp.apply(lab_flows(host, [doomed, kept], ports))
            assert await ping(kept, doomed)
            lab.forget_namespace(doomed.ns)

            async def reported() -> bool:
                return lost == [doomed.name]

            assert await eventually(reported, 10)
            assert dp.health().ok, dp.health().reason
            assert doomed.name not in dp.ports() and kept.name in dp.ports()
            listed = host.ovs("ovs-vsctl", "list-ports", "mr-int")
            assert netlink.host_ifname(doomed.name) not in listed
            assert netlink.host_ifname(kept.name) in listed
            assert dp.status()["lost_ports"] == [doomed.name]
            # detaching the vanished container is a no-op; the other one still works
            await dp.detach_port(doomed.name)
            await dp.apply(lab_flows(host, [kept], ports))
            nursery.cancel_scope.cancel()

    trio.run(main)


def test_attach_is_idempotent_and_bad_input_leaves_nothing(lab: Lab) -> None:
    host = lab.add_host()
    c = lab.add_container(host)

    async def body(dps: list[OvsDatapath], nursery: trio.Nursery) -> None:
        dp = dps[0]
        request = PortRequest(c.name, c.ns, "eth0", c.mac, f"{c.ip}/16")
        first = await dp.attach_port(request)
        again = await dp.attach_port(request)
        assert again == first and first.mtu == 1450
        assert "mtu 1450" in c.exec("ip", "link", "show", "eth0")
        features = c.exec("ethtool", "-k", "eth0")
        assert "tx-checksum-ip-generic: off" in features
        before = host.exec("ip", "-br", "link")
        with pytest.raises(NotFoundError):
            await dp.attach_port(PortRequest("x", f"{lab.prefix}nope", "eth0",
                                             "02:00:00:00:00:09", "10.9.0.9/16"))
        with pytest.raises(InvalidRequestError):
            await dp.attach_port(PortRequest("y", c.ns, "eth1", "02:00:00:00:00:0a", "nonsense"))
        with pytest.raises(InvalidRequestError):
            await dp.attach_port(PortRequest("z", c.ns, "eth2", "01:00:00:00:00:0b", "10.9.0.8/16"))
        # fails after the veth was made and moved (eth0 is taken in the container):
        # the pair is removed again
        with pytest.raises(ConflictError):
            await dp.attach_port(PortRequest("w", c.ns, "eth0", "02:00:00:00:00:0c", "10.9.0.7/16"))
        assert host.exec("ip", "-br", "link") == before
        assert netlink.host_ifname("w") not in host.ovs("ovs-vsctl", "list-ports", "mr-int")
        # the namespace by path, and by the PID of a process inside it
        other = lab.add_container(host)
        with pytest.raises(ConflictError, match="already in use"):
            await dp.attach_port(PortRequest(other.name, other.ns, "eth0", other.mac,
                                             f"{other.ip}/16", extra={"ofport": first.port}))
        assert host.exec("ip", "-br", "link") == before
        by_path = await dp.attach_port(PortRequest(other.name, f"/run/netns/{other.ns}", "eth0",
                                                   other.mac, f"{other.ip}/16"))
        assert by_path.port != first.port
        third = lab.add_container(host)
        sleeper = await trio.lowlevel.open_process(["ip", "netns", "exec", third.ns, "sleep", "60"])
        try:
            await trio.sleep(0.3)
            await dp.attach_port(PortRequest(third.name, str(sleeper.pid), "eth0", third.mac,
                                             f"{third.ip}/16"))
        finally:
            sleeper.kill()
            await sleeper.wait()
        assert "eth0" in third.exec("ip", "-br", "link")
        await dp.apply(lab_flows(host, [c, other, third], {
            p.container_id: p.port for p in dp.ports().values()}))
        assert await ping(third, other) and await ping(other, c)
        await dp.detach_port(other.name)
        await dp.detach_port(third.name)
        assert sorted(dp.ports()) == [c.name]
        await dp.detach_port(c.name)
        assert not dp.ports()
        ifname = netlink.host_ifname(c.name)
        assert ifname not in host.exec("ip", "-br", "link")
        assert ifname not in host.ovs("ovs-vsctl", "list-ports", "mr-int")
        assert "eth0" not in c.exec("ip", "-br", "link")

    run_lab(lab, [host], body)


def test_foreign_flows_are_untouched_and_a_restart_adopts_ports(lab: Lab) -> None:
    hosts = [lab.add_host(), lab.add_host()]
    c1, c2 = (lab.add_container(h) for h in hosts)
    foreign = "cookie=0x1,table=7,priority=5,dl_dst=02:00:00:00:00:77 actions=drop"
    stray = "cookie=0x6d72000400000009,table=7,priority=6,dl_dst=02:00:00:00:00:78 actions=drop"
    saved: dict[str, int] = {}

    def dump() -> str:
        return hosts[0].ovs("ovs-ofctl", "-O", "OpenFlow13", "dump-flows", "mr-int", "--no-stats")

    async def first(dps: list[OvsDatapath], nursery: trio.Nursery) -> None:
        saved.update(await attach_all(dps, hosts))
        for dp, h in zip(dps, hosts, strict=True):
            await dp.apply(lab_flows(h, [c1, c2], saved))
        # one endpoint removed: a delta of its two flows only
        await dps[0].apply(lab_flows(hosts[0], [c1], saved))
        assert dps[0].last_apply["kind"] == "delta"
        assert dps[0].last_apply["flow_mods"] == 2
        # another owner's flow, and a stray flow with our cookie the shell did not make
        hosts[0].ovs("ovs-ofctl", "-O", "OpenFlow13", "add-flow", "mr-int", foreign)
        hosts[0].ovs("ovs-ofctl", "-O", "OpenFlow13", "add-flow", "mr-int", stray)

        async def reinstalled() -> bool:
            return "02:00:00:00:00:78" not in dump()

        assert await eventually(reinstalled, 10), "verification must notice the stray flow"
        applies = dps[0].status()["recent_applies"]
        assert applies[-1]["kind"] == "full" or applies[-2]["kind"] == "full", applies
        assert "02:00:00:00:00:77" in dump(), "a full apply must keep other owners' flows"
        assert len(dump().strip().splitlines()) == len(lab_flows(hosts[0], [c1], saved)) + 1

    run_lab(lab, hosts, first)

    async def second(dps: list[OvsDatapath], nursery: trio.Nursery) -> None:
        # a new router process: ports are found in the OVS database, not re-made
        assert {p.container_id: p.port for dp in dps for p in dp.ports().values()} == saved
        for dp, h in zip(dps, hosts, strict=True):
            await dp.apply(lab_flows(h, [c1, c2], saved))
        assert await eventually(lambda: ping(c1, c2), 10)

    run_lab(lab, hosts, second)


def test_a_jumbo_underlay_gives_containers_its_mtu_minus_the_vxlan_overhead(lab: Lab) -> None:
    """End to end: 8,950-byte frames cross between containers, and the hosts'
    own 9,000-byte packets cross the underlay bridge.  AF_XDP carries at most a
    3,698-byte MTU (one umem frame), so ``auto`` must put those ports on
    AF_PACKET; a smaller container beside them still gets AF_XDP."""
    hosts = [lab.add_host(mtu=9000), lab.add_host(mtu=9000)]
    c1, c2 = (lab.add_container(h) for h in hosts)

    def df_ping(src: Container | Host, dst_ip: str, payload: int) -> bool:
        return subprocess.run(
            ["ip", "netns", "exec", src.ns, "ping", "-c", "2", "-i", "0.2", "-W", "2",
             "-M", "do", "-s", str(payload), dst_ip],
            capture_output=True, timeout=20, check=False).returncode == 0

    async def body(dps: list[OvsDatapath], nursery: trio.Nursery) -> None:
        ports = await attach_all(dps, hosts)
        assert dps[0].status()["container_mtu"] == 8950
        # only AF_PACKET ports so far: whatever was asked, the main thread polls them
        assert dps[0].status()["port_io"]["threads"] == "vswitchd's main thread"
        assert "mtu 8950" in c1.exec("ip", "link", "show", "eth0")
        assert "mtu 9000" in hosts[0].exec("ip", "link", "show", "mr-phy")
        given = lab.add_container(hosts[0])
        port = await dps[0].attach_port(PortRequest(given.name, given.ns, "eth0", given.mac,
                                                    f"{given.ip}/16", mtu=1400))
        ports[given.name] = port.port
        assert "mtu 1400" in given.exec("ip", "link", "show", "eth0")
        for dp, h in zip(dps, hosts, strict=True):
            await dp.apply(lab_flows(h, [c1, c2, given], ports))
        io = dps[0].status()["port_io"]
        if io["next"] != "afpacket":  # this host has AF_XDP: the large ports must not use it
            assert io["underlay"] == "afpacket" and io["containers"] == ["afpacket", "afxdp"]
            assert "above AF_XDP's 3698" in io["why"]
        assert await eventually(lambda: ping(c1, c2), 10)
        for src, dst_ip, payload in ((c1, c2.ip, 8922), (c2, c1.ip, 8922),
                                     (hosts[0], hosts[1].ip, 8972), (given, c2.ip, 1372)):
            ok = await trio.to_thread.run_sync(df_ping, src, dst_ip, payload)
            assert ok, f"{payload}-byte ping from {src.ns} to {dst_ip}"

    run_lab(lab, hosts, body)


def test_after_a_crash_the_daemons_are_adopted_and_traffic_flows_until_the_first_apply(
    lab: Lab,
) -> None:
    hosts = [lab.add_host(), lab.add_host()]
    c1, c2 = (lab.add_container(h) for h in hosts)
    saved: dict[str, int] = {}
    pids: list[int | None] = []

    async def crash() -> None:
        dps = [OvsDatapath(h.settings()) for h in hosts]
        for dp in dps:
            dp._shutdown = _no_shutdown  # type: ignore[method-assign]  # a kill -9
        async with trio.open_nursery() as nursery:
            for dp in dps:
                await nursery.start(dp.run)
            saved.update(await attach_all(dps, hosts))
            for dp, h in zip(dps, hosts, strict=True):
                await dp.apply(lab_flows(h, [c1, c2], saved))
            pids.extend(h.pid("ovs-vswitchd") for h in hosts)
            nursery.cancel_scope.cancel()

    trio.run(crash)

    async def restarted() -> None:
        dps = [OvsDatapath(h.settings()) for h in hosts]
        async with trio.open_nursery() as nursery:
            for dp in dps:
                await nursery.start(dp.run)
            assert [h.pid("ovs-vswitchd") for h in hosts] == pids, "adopted, not restarted"
            assert dps[0].health().ok
            # no apply yet: the old table still forwards
            assert await ping(c1, c2)
            for dp, h in zip(dps, hosts, strict=True):
                await dp.apply(lab_flows(h, [c1, c2], saved))
                assert dp.last_apply["kind"] == "full"
            assert await ping(c2, c1)
            nursery.cancel_scope.cancel()

    trio.run(restarted)


async def _no_shutdown() -> None:
    return None

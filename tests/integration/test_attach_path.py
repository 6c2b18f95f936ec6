"""The fast attach path on real OVS (issue 9): spare ports and gratuitous ARP.

Same lab as ``test_ovs_lab`` (OvsDatapath per host namespace, hand-written
flows); what is judged here is what the kernel and OVS show: which port a
container got, what OVS records about it, what is left after a stop, and
whether a container that asked for an address before it existed gets its
answer from the announcement rather than from its own (disabled) ARP retry.
"""

from __future__ import annotations

import json
import os
from collections.abc import Awaitable, Callable

import pytest
import trio

from meshrouter.dataplane.ovs import OvsDatapath
from meshrouter.node.datapath import PortRequest
from tests.integration.flows import lab_flows
from tests.integration.lab import Container, Host, Lab

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]


async def eventually(check: Callable[[], Awaitable[bool] | bool], seconds: float = 20) -> bool:
    with trio.move_on_after(seconds):
        while True:
            result = check()
            if result if isinstance(result, bool) else await result:
                return True
            await trio.sleep(0.1)
    return False


def external_ids(host: Host, ifname: str) -> dict[str, str]:
    out = host.ovs("ovs-vsctl", "--format=json", "--columns=external_ids", "list",
                   "interface", ifname)
    pairs = json.loads(out)["data"][0][0][1]  # [["map", [[k, v], ...]]]
    return {str(k): str(v) for k, v in pairs}


def request(c: Container) -> PortRequest:
    return PortRequest(c.name, c.ns, "eth0", c.mac, f"{c.ip}/16")


async def forwarding(nursery: trio.Nursery, dps: list[OvsDatapath],
                     hosts: list[tuple[Host, Container]]) -> None:
    """Start each host's datapath, attach its container, and apply the lab's flows."""
    for dp in dps:
        await nursery.start(dp.run)
    ports = {c.name: (await dp.attach_port(request(c))).port
             for dp, (_, c) in zip(dps, hosts, strict=True)}
    containers = [c for _, c in hosts]
    for dp, (h, _) in zip(dps, hosts, strict=True):
        await dp.apply(lab_flows(h, containers, ports))


def test_spares_are_taken_relabelled_and_removed_at_stop(lab: Lab) -> None:
    h1, h2 = lab.add_host(), lab.add_host()
    c1, c2 = lab.add_container(h1), lab.add_container(h2)
    containers = [c1, c2]
    seen: dict[str, object] = {}

    async def main() -> None:
        dps = [OvsDatapath(h.settings(port_pool=1)) for h in (h1, h2)]
        async with trio.open_nursery() as nursery:
            for dp in dps:
                await nursery.start(dp.run)
            for dp in dps:
                assert await eventually(lambda dp=dp: dp.status()["spare_ports"] == 1)
            spare_row = [r for r in h1.ovs("ovs-vsctl", "list-ports", "mr-int").split()
                         if r.startswith("mp")]
            p1 = await dps[0].attach_port(request(c1))
            p2 = await dps[1].attach_port(request(c2))
            seen["spare"], seen["got"] = spare_row, p1.host_ifname
            seen["taken"] = dps[0].status()["spares_taken"]
            ports = {c1.name: p1.port, c2.name: p2.port}
            for dp, h in zip(dps, (h1, h2), strict=True):
                await dp.apply(lab_flows(h, containers, ports))
            seen["ping"] = await trio.to_thread.run_sync(lambda: c1.ping(c2, count=1, wait=2))
            seen["labelled"] = await eventually(
                lambda: external_ids(h1, p1.host_ifname).get("meshrouter-container") == c1.name)
            seen["spare key"] = "meshrouter-spare" in external_ids(h1, p1.host_ifname)
            seen["eth0"] = c1.exec("ip", "-br", "link", "show", "eth0")
            # a new spare replaces the one taken
            assert await eventually(lambda: dps[0].status()["spare_ports"] == 1)
            nursery.cancel_scope.cancel()

    trio.run(main)
    assert seen["spare"] == [seen["got"]] and seen["taken"] == 1
    assert seen["ping"] and seen["labelled"] and not seen["spare key"]
    assert "UP" in str(seen["eth0"])
    # stopped: no spare pair is left in the host's namespace
    links = h1.exec("ip", "-br", "link")
    assert not [line for line in links.splitlines() if line.startswith(("mp", "mq"))
                and not line.startswith(str(seen["got"]))], links


def test_a_container_that_asked_too_early_hears_the_announcement(lab: Lab) -> None:
    h1, h2 = lab.add_host(), lab.add_host()
    prober, late = lab.add_container(h2), lab.add_container(h1)
    # the prober's kernel asks once, then not again for a minute: only a
    # gratuitous ARP can complete its neighbour entry within the test
    prober_sysctls = ["net.ipv4.neigh.eth0.retrans_time_ms=60000",
                      "net.ipv4.neigh.eth0.mcast_solicit=1",
                      "net.ipv4.neigh.eth0.ucast_solicit=1"]
    seen: dict[str, object] = {}

    async def main() -> None:
        dps = [OvsDatapath(h.settings()) for h in (h1, h2)]
        async with trio.open_nursery() as nursery:
            for dp in dps:
                await nursery.start(dp.run)
            p2 = await dps[1].attach_port(request(prober))
            prober.exec("sysctl", "-qw", *prober_sysctls)
            await dps[1].apply(lab_flows(h2, [prober], {prober.name: p2.port}))
            # its ARP request goes out, unanswered (nobody knows the address yet)
            prober.exec("ping", "-c", "1", "-W", "1", late.ip, check=False)
            seen["incomplete"] = prober.exec("ip", "neigh", "show", late.ip)
            p1 = await dps[0].attach_port(request(late))
            ports = {prober.name: p2.port, late.name: p1.port}
            for dp, h in zip(dps, (h1, h2), strict=True):
                await dp.apply(lab_flows(h, [prober, late], ports))
            seen["frames"] = await dps[1].announce([(late.mac, late.ip)])
            seen["learned"] = await eventually(
                lambda: late.mac in prober.exec("ip", "neigh", "show", late.ip), 10)
            seen["ping"] = await trio.to_thread.run_sync(lambda: prober.ping(late, count=3))
            seen["neigh"] = prober.exec("ip", "neigh", "show", late.ip)
            nursery.cancel_scope.cancel()

    trio.run(main)
    assert "INCOMPLETE" in str(seen["incomplete"]) or "FAILED" in str(seen["incomplete"])
    assert seen["frames"] == 1  # one endpoint, one local port on h2
    assert seen["learned"] and seen["ping"], seen


def test_afxdp_where_it_works_and_afpacket_where_it_fails(
        lab: Lab, caplog: pytest.LogCaptureFixture) -> None:
    """h1 gets AF_XDP (generic mode works on veth); h2 is told to use a mode
    veth cannot do, so its first AF_XDP port fails, and everything there is
    AF_PACKET -- without trying AF_XDP again per port.  Both still forward."""
    h1, h2 = lab.add_host(), lab.add_host()
    c1, c2 = lab.add_container(h1), lab.add_container(h2)
    seen: dict[str, object] = {}

    async def main() -> None:
        dps = [OvsDatapath(h1.settings(port_io="auto")),
               OvsDatapath(h2.settings(port_io="auto", xdp_mode="native-with-zerocopy"))]
        async with trio.open_nursery() as nursery:
            await forwarding(nursery, dps, [(h1, c1), (h2, c2)])
            seen["io"] = [dp.status()["port_io"] for dp in dps]
            seen["types"] = [h.ovs("ovs-vsctl", "get", "interface", iface, "type").strip()
                             for h in (h1, h2) for iface in ("ul0",)]
            seen["ping"] = await trio.to_thread.run_sync(lambda: c1.ping(c2, count=3))
            nursery.cancel_scope.cancel()

    trio.run(main)
    io1, io2 = seen["io"]  # type: ignore[misc]
    kind = "afxdp" if len(os.sched_getaffinity(0)) >= 2 else "afxdp-nonpmd"  # PMD from 2 CPUs
    assert (io1["underlay"], io1["containers"]) == ("afxdp", ["afxdp"]), io1
    assert (io2["underlay"], io2["containers"]) == ("afpacket", ["afpacket"]), io2
    assert io2["why"].startswith(f"AF_XDP unusable here: {kind} "
                                 "xdp-mode=native-with-zerocopy on ul0"), io2
    assert seen["types"] == [kind, '""'] and seen["ping"], seen
    # one failed AF_XDP attempt on h2 (the underlay); its container port never tried
    failed = [r.getMessage() for r in caplog.records if "AF_XDP port failed" in r.getMessage()]
    assert len(failed) == 1 and "on ul0" in failed[0], failed


def test_pmd_threads_sleep_when_idle_and_sit_on_the_cores_given(lab: Lab) -> None:
    """``afxdp-pmd``: h1 names no mask, so its PMD sits on the last CPU the router
    may use; h2's mask is given.  Both PMDs may sleep when idle (``pmd-maxsleep``),
    poll every AF_XDP port, and forward."""
    h1, h2 = lab.add_host(), lab.add_host()
    c1, c2 = lab.add_container(h1), lab.add_container(h2)
    last = max(os.sched_getaffinity(0))
    seen: dict[str, object] = {}

    async def main() -> None:
        dps = [OvsDatapath(h1.settings(port_io="afxdp-pmd", pmd_max_sleep_us=250)),
               OvsDatapath(h2.settings(port_io="afxdp-pmd", pmd_cpu_mask="0x1"))]
        async with trio.open_nursery() as nursery:
            await forwarding(nursery, dps, [(h1, c1), (h2, c2)])
            seen["threads"] = [dp.status()["port_io"]["threads"] for dp in dps]
            seen["config"] = [h.ovs("ovs-vsctl", "get", "Open_vSwitch", ".", "other_config")
                              for h in (h1, h2)]
            seen["rxq"] = [h.ovs("ovs-appctl", "dpif-netdev/pmd-rxq-show") for h in (h1, h2)]
            seen["ping"] = await trio.to_thread.run_sync(lambda: c1.ping(c2, count=3))
            nursery.cancel_scope.cancel()

    trio.run(main)
    assert seen["threads"] == [f"PMD on CPU mask {hex(1 << last)}, idle sleep up to 250 us",
                               "PMD on CPU mask 0x1, idle sleep up to 100 us"], seen
    config1, config2 = seen["config"]  # type: ignore[misc]
    assert f'pmd-cpu-mask="{hex(1 << last)}"' in config1 and 'pmd-maxsleep="250"' in config1
    assert 'pmd-cpu-mask="0x1"' in config2 and 'pmd-maxsleep="100"' in config2
    rxq1, rxq2 = seen["rxq"]  # type: ignore[misc]
    assert f"core_id {last}:" in rxq1 and "core_id 0:" in rxq2, seen["rxq"]
    for rxq, host_port in ((rxq1, "ul0"), (rxq2, "ul0")):
        assert f"port: {host_port}" in rxq and "port: mr" in rxq, rxq  # underlay + container
    assert seen["ping"], seen

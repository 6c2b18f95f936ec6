"""Container ports on the integration bridge: veth (netlink.py) + OVS port.

The OVS database is the record of which container owns which port
(``external_ids:meshrouter-container``, with its MAC and MTU), so a restarted
router finds its ports again without a state file of its own, and vswitchd
re-creates them by itself after a restart.  Port numbers are fixed
(``ofport_request``) so the flow table never waits for OVS to pick one.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import trio

from meshrouter.dataplane import netlink
from meshrouter.dataplane.ovs import pool
from meshrouter.dataplane.ovs.bridges import add_port_with_io, parse_json_table
from meshrouter.dataplane.ovs.tools import OvsTools
from meshrouter.errors import ConflictError, InvalidRequestError, UnavailableError
from meshrouter.node.datapath import LocalPort, PortRequest

log = logging.getLogger(__name__)

KEY = "meshrouter-container"


async def load_ports(tools: OvsTools, bridge: str) -> dict[str, tuple[LocalPort, dict[str, Any]]]:
    """Our container ports in the database: ``{container_id: (port, interface row)}``."""
    text = await tools.vsctl(
        "--format=json", "--columns=name,type,ofport,ofport_request,error,external_ids",
        "list", "Interface",
    )
    found: dict[str, tuple[LocalPort, dict[str, Any]]] = {}
    for row in parse_json_table(text):
        ids = row.get("external_ids") or {}
        if not isinstance(ids, dict) or KEY not in ids or ids.get("meshrouter-bridge") != bridge:
            continue
        request = row.get("ofport_request")
        try:
            port = LocalPort(
                container_id=ids[KEY],
                port=int(request) if isinstance(request, int) else int(row.get("ofport", -1)),
                host_ifname=str(row["name"]),
                mac=str(ids.get("meshrouter-mac", "")),
                mtu=int(ids.get("meshrouter-mtu", "0")),
            )
        except (TypeError, ValueError):
            log.warning("ignoring interface %s with damaged external_ids", row.get("name"))
            continue
        found[port.container_id] = (port, row)
    return found


async def attach(
    tools: OvsTools,
    *,
    bridge: str,
    request: PortRequest,
    mtu: int,
    ofport: int,
    port_io: str,
    switch_netns: str | None,
    mark: Callable[[str], None] = lambda step: None,
    xdp_mode: str = "generic",
    on_xdp: Callable[[bool, str], None] | None = None,
) -> tuple[LocalPort, str]:
    """veth pair, then the OVS port; removes what it made if a later step fails.
    ``mark(step)`` is called after each step (the attach-latency breakdown)."""
    spec = _spec(request, mtu)
    host, created = await netlink.in_netns(
        switch_netns, lambda: netlink.attach_veth(spec, mark=mark))
    mark("veth done")
    extra = [
        f"ofport_request={ofport}",
        f'external_ids:{KEY}="{request.container_id}"',
        f'external_ids:meshrouter-bridge="{bridge}"',
        f'external_ids:meshrouter-mac="{spec.mac}"',
        f"external_ids:meshrouter-mtu={mtu}",
    ]
    try:
        io, row = await add_port_with_io(tools, bridge, host, port_io, extra, fresh=created,
                                         xdp_mode=xdp_mode, on_xdp=on_xdp, mtu=mtu)
        mark(f"ovs port ({io})")
        got = row.get("ofport")
        if got != ofport:
            raise UnavailableError(
                f"port {host} did not get ofport {ofport} ({got}): {row.get('error') or 'missing'}")
    except BaseException:
        await _undo(tools, host, switch_netns, created)
        raise
    return LocalPort(request.container_id, ofport, host, spec.mac, mtu), io


async def attach_spare(
    tools: OvsTools,
    *,
    bridge: str,
    request: PortRequest,
    spare: pool.Spare,
    switch_netns: str | None,
    mark: Callable[[str], None] = lambda step: None,
) -> LocalPort:
    """Give ``spare`` to the container (``pool.py``); the spare is used up either way.
    The OVS row still says "spare": ``relabel`` it (off the attach's critical path)."""
    try:
        spec = _spec(request, spare.mtu)
        await netlink.in_netns(switch_netns, lambda: pool.adopt(spec, spare, mark))
        mark("veth done")
    except BaseException:
        with trio.CancelScope(shield=True):
            await pool.remove(tools, spare.host, switch_netns)
        raise
    return LocalPort(request.container_id, spare.ofport, spare.host, spec.mac, spare.mtu)


async def relabel(tools: OvsTools, bridge: str, port: LocalPort) -> None:
    """Record in OVS that ``port`` (a former spare) belongs to its container, so a
    restarted router finds it (database only).  Until then it is a spare there:
    a router that crashes meanwhile removes it at start, which takes the
    container's veth with it, and the restored attach makes a new one."""
    labels = [
        f'external_ids:{KEY}="{port.container_id}"',
        f'external_ids:meshrouter-bridge="{bridge}"',
        f'external_ids:meshrouter-mac="{port.mac}"',
        f"external_ids:meshrouter-mtu={port.mtu}",
    ]
    try:
        await tools.vsctl_nowait("set", "interface", port.host_ifname, *labels,
                                 "--", "remove", "interface", port.host_ifname,
                                 "external_ids", pool.SPARE_KEY)
    except UnavailableError as exc:  # the port works; a restart would re-make it
        log.warning("cannot label port %s for %s: %s", port.host_ifname,
                    port.container_id, exc)


def _spec(request: PortRequest, mtu: int) -> netlink.VethSpec:
    spec = netlink.VethSpec(
        container_id=request.container_id,
        container_netns=netlink.resolve_netns(request.netns),
        ifname=request.ifname,
        mac=request.mac.lower(),
        cidr=request.cidr,
        mtu=mtu,
        gateway=request.gateway,
    )
    spec.validate()
    return spec


async def _undo(tools: OvsTools, host: str, switch_netns: str | None, created: bool) -> None:
    try:
        await tools.vsctl("--if-exists", "del-port", host)
    except UnavailableError as exc:
        log.warning("cannot remove port %s after a failed attach: %s", host, exc)
    if created:
        await netlink.in_netns(switch_netns, lambda: netlink.delete_link(host))


async def detach(tools: OvsTools, host: str, switch_netns: str | None) -> None:
    await tools.vsctl("--if-exists", "del-port", host)
    await netlink.in_netns(switch_netns, lambda: netlink.delete_link(host))


def check_request(request: PortRequest, ports: dict[str, LocalPort]) -> LocalPort | None:
    """The existing port for the same container (idempotent attach), else None;
    a clash with another container is a ``ConflictError``."""
    if not request.container_id or len(request.container_id) > 256:
        raise InvalidRequestError("container ID must be 1-256 characters")
    existing = ports.get(request.container_id)
    for other in ports.values():
        if other.container_id != request.container_id and other.mac == request.mac.lower():
            raise ConflictError(f"MAC {request.mac} is already used by container "
                                f"{other.container_id}")
    return existing

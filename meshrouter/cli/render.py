"""Tables for ``meshrouter status [SECTION]``: one function per section, chosen
in ``RENDERERS``.  The data is the API's JSON, so a table shows nothing the
``--json`` output does not have.  A feature with its own status section adds
its renderer here (or in its own module) and one line to ``RENDERERS``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from rich.console import Console
from rich.table import Table

WIDTH = 160


def make_console() -> Console:
    """A console that prints data as it is: no markup, no emoji codes.  (A peer
    name such as ``f6:cd:6b:...`` holds ``:cd:``, which rich would draw as a
    disc, and a nickname or reason may hold ``[...]``.)"""
    return Console(width=WIDTH, markup=False, emoji=False, highlight=False)


def print_status(section: str | None, data: Any, console: Console | None = None) -> None:
    """Draw ``data`` (the answer of ``/status[/section]``) as the section's table."""
    RENDERERS[section](console or make_console(), data)


def _key_value_grid() -> Table:
    grid = Table.grid(padding=(0, 2))
    grid.add_column(justify="right", style="bold")
    grid.add_column()
    return grid


def print_summary(console: Console, data: dict[str, Any]) -> None:
    states = data.get("connection_states", {})
    state_text = ", ".join(f"{n} {s}" for s, n in sorted(states.items())) or "none"
    table = _key_value_grid()
    rows = [
        ("Version", f"meshrouter {data['version']}"),
        ("Name", f"{data['name']} ({data['nickname']})"),
        ("Listen", str(data["listen"])),
        ("Encryption", "enabled" if data["encryption"] else "disabled"),
        ("Peer discovery", "enabled" if data["discovery"] else "disabled"),
        ("Cluster", data["cluster_id"] or "(none yet)"),
        ("Targets", str(data["targets"])),
        ("Connections", f"{data['connections']} established (all: {state_text})"),
        ("Peers", f"{data['peers']} (with {data['established_links']} established links)"),
        ("Conn limit", str(data["conn_limit"])),
    ]
    datapath = data.get("datapath") or {}
    if datapath:
        rows.append(("Datapath", datapath_text(datapath)))
    dataplane = data.get("dataplane")
    if dataplane:
        rows.append((
            "Containers",
            f"{dataplane['endpoints_local']} attached here, {dataplane['endpoints_total']} "
            f"in the mesh; {dataplane['flows']} flows",
        ))
    dns = data.get("dns")
    if dns:
        for_containers = f", containers use {dns['nameserver']}" if dns.get("nameserver") else ""
        rows.append(("DNS", f"{dns['domain']} on {dns['listen']}{for_containers}, "
                     f"{dns['names']} names"))
    for key, value in rows:
        table.add_row(key + ":", value)
    console.print(table)


def datapath_text(status: dict[str, Any]) -> str:
    """``ovs-netdev bridge mr-int, 42 flows, ok`` or why it is degraded."""
    if status.get("type") == "none":
        return "none (control plane only)"
    parts = [str(status.get("type")), f"bridge {status.get('bridge')}",
             f"{status.get('flows', 0)} flows"]
    port_io = status.get("port_io") or {}
    if port_io.get("underlay"):
        parts.append(f"underlay {port_io['underlay']}")
    if port_io.get("containers"):
        parts.append(f"containers {', '.join(port_io['containers'])}")
    if "afpacket" in {port_io.get("underlay"), *port_io.get("containers", [])} \
            and port_io.get("why"):
        parts.append(f"({port_io['why']})")
    health = status.get("health", "?")
    reason = status.get("reason")
    parts.append(health if health == "ok" or not reason else f"{health}: {reason}")
    return ", ".join(parts)


def link_text(link: dict[str, Any]) -> str:
    """One link of a peer: ``->NAME`` (it dialled) or ``<-NAME``, and whether pending."""
    arrow = "->" if link["outbound"] else "<-"
    return f"{arrow}{link['peer']}{'' if link['established'] else ' (pending)'}"


def print_peers(console: Console, peers: list[dict[str, Any]]) -> None:
    table = Table(title=f"{len(peers)} peers")
    for column in ("name", "nickname", "short id", "version", "data path", "connections"):
        table.add_column(column, overflow="fold")
    for peer in peers:
        conns = ", ".join(link_text(c) for c in peer["connections"])
        path = peer.get("data_path") or {}
        path_text = (
            "" if not path else path["path"] if path["path"] == "direct"
            else f"relayed via {path['via']}"
        )
        table.add_row(
            peer["name"], peer["nickname"], str(peer["short_id"]), str(peer["version"]),
            path_text, conns,
        )
    console.print(table)


def print_connections(console: Console, rows: list[dict[str, Any]]) -> None:
    table = Table(title=f"{len(rows)} connections")
    for column in ("dir", "address", "peer", "state", "info"):
        table.add_column(column, overflow="fold")
    for row in rows:
        peer = f"{row['peer']} ({row['nickname']})" if row.get("nickname") else row["peer"]
        table.add_row(
            "->" if row["outbound"] else "<-", row["address"], peer, row["state"], row["info"]
        )
    console.print(table)


def print_targets(console: Console, rows: list[dict[str, Any]]) -> None:
    table = Table(title=f"{len(rows)} targets")
    for column in ("address", "kind", "state", "peer", "info"):
        table.add_column(column, overflow="fold")
    for row in rows:
        kind = "direct" if row["direct"] else "discovered"
        table.add_row(row["address"], kind, row["state"], row["peer"], row["info"])
    console.print(table)


def print_ipam(console: Console, data: dict[str, Any]) -> None:
    head = _key_value_grid()
    head.add_row("Range:", data["range"])
    head.add_row("Cluster:", data["cluster_id"] or "(none yet)")
    head.add_row("Founding:", data["mode"])
    head.add_row("State:", data["state"])
    allocated = f"{data['allocated']} addresses, {data['containers']} containers"
    head.add_row("Allocated here:", allocated)
    head.add_row("Unreachable:", f"{data['unreachable_ratio'] * 100:.1f}% of the range")
    console.print(head)
    table = Table(title="ranges per peer")
    for column in ("peer", "reachable", "size", "free", "reserved", "ranges"):
        table.add_column(column, overflow="fold")
    for peer in data["peers"]:
        ranges = ", ".join(peer["ranges"][:4]) + (" ..." if len(peer["ranges"]) > 4 else "")
        table.add_row(
            peer["peer"],
            "yes" if peer["reachable"] else "NO",
            str(peer["size"]),
            "?" if peer["free"] is None else str(peer["free"]),
            str(peer["reserved"]),
            ranges,
        )
    console.print(table)
    if data["pending"]:
        pending = Table(title="pending requests")
        for column in ("container", "request", "waiting", "why"):
            pending.add_column(column, overflow="fold")
        for row in data["pending"]:
            pending.add_row(
                row["container"], row["request"], f"{row['waiting_s']:.0f}s", row["reason"]
            )
        console.print(pending)


def print_endpoints(rows: list[dict[str, Any]], console: Console | None = None) -> None:
    """``meshrouter ps``: every attached container of the mesh."""
    table = Table(title=f"{len(rows)} containers")
    for column in ("container", "mac", "ip", "name", "host"):
        table.add_column(column, overflow="fold")
    for row in rows:
        host = row["host"] + (" (here)" if row.get("local") else "")
        table.add_row(row["container_id"], row["mac"], row["ip"], row.get("name") or "", host)
    (console or make_console()).print(table)


def print_dns(console: Console, data: dict[str, Any]) -> None:
    head = _key_value_grid()
    head.add_row("Domain:", data["domain"])
    serving = data["listen"] if data.get("serving") else f"{data['listen']} (not serving)"
    head.add_row("Listen:", serving + (f": {data['error']}" if data.get("error") else ""))
    if "nameserver" in data:
        head.add_row("For containers:", data["nameserver"]
                     or f"none ({data.get('nameserver_error') or 'not exposed'})")
    head.add_row("Upstreams:", ", ".join(data.get("upstreams") or []) or "(none)")
    responses = ", ".join(f"{code} {n}" for code, n in data.get("responses", {}).items())
    head.add_row("Answers:", responses or "none yet")
    console.print(head)
    table = Table(title=f"{len(data['records'])} names")
    for column in ("name", "address", "container", "owner", "state"):
        table.add_column(column, overflow="fold")
    for name, records in data["records"].items():
        for record in records:
            table.add_row(name, record["address"], record["container"], record["owner"],
                          record["state"])
    console.print(table)


def print_dataplane(console: Console, data: dict[str, Any]) -> None:
    head = _key_value_grid()
    head.add_row("Datapath:", datapath_text(data.get("datapath") or {}))
    head.add_row("Containers:", f"{data['endpoints_local']} here, "
                 f"{data['endpoints_total']} in the mesh")
    head.add_row("Flows:", str(data["flows"]))
    console.print(head)
    print_endpoints(data.get("endpoints", []), console)


def print_expose(console: Console, data: dict[str, Any]) -> None:
    head = _key_value_grid()
    head.add_row("State:", str(data["state"]) + (" (automatic)" if data.get("auto") else ""))
    head.add_row("Address:", data.get("address") or "(none)")
    head.add_row("Interface:", str(data.get("interface", "")))
    head.add_row("Mode:", str(data.get("mode", "")))
    if data.get("error"):
        head.add_row("Error:", str(data["error"]))
    console.print(head)


RENDERERS: dict[str | None, Callable[[Console, Any], None]] = {
    None: print_summary,
    "peers": print_peers,
    "connections": print_connections,
    "targets": print_targets,
    "ipam": print_ipam,
    "dns": print_dns,
    "dataplane": print_dataplane,
    "expose": print_expose,
}

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
    for key, value in rows:
        table.add_row(key + ":", value)
    console.print(table)


def link_text(link: dict[str, Any]) -> str:
    """One link of a peer: ``->NAME`` (it dialled) or ``<-NAME``, and whether pending."""
    arrow = "->" if link["outbound"] else "<-"
    return f"{arrow}{link['peer']}{'' if link['established'] else ' (pending)'}"


def print_peers(console: Console, peers: list[dict[str, Any]]) -> None:
    table = Table(title=f"{len(peers)} peers")
    for column in ("name", "nickname", "short id", "version", "connections"):
        table.add_column(column, overflow="fold")
    for peer in peers:
        conns = ", ".join(link_text(c) for c in peer["connections"])
        table.add_row(
            peer["name"], peer["nickname"], str(peer["short_id"]), str(peer["version"]), conns
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


RENDERERS: dict[str | None, Callable[[Console, Any], None]] = {
    None: print_summary,
    "peers": print_peers,
    "connections": print_connections,
    "targets": print_targets,
    "ipam": print_ipam,
}

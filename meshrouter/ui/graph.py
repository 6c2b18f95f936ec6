"""Theory of operation: the mesh picture as a pure function of JSON-able facts.

``render_svg(facts)`` draws every peer on a circle (ourselves at the top, the
rest in name order, so the picture is stable between refreshes), the links
between them by state, and -- from our point of view -- whether the data path
to each peer is direct or relayed.  Input is plain data (``GraphFacts`` shape,
built by the UI service from the router's status), output an SVG string; no
I/O, no clock, so tests check the drawing exactly.

Readable at 3 and at 100 peers: the circle grows with the peer count; up to
``FULL_LABELS`` peers every node has its nickname and its address and
container counts; beyond, only ``THINNED_LABELS`` nodes are labelled (ourselves,
peers with a failed link or a relayed path, then evenly spaced others) and each
node keeps a ``<title>`` tooltip with everything.  Links to peers we only know
by address (a target that never answered) end at a small node of their own.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from xml.sax.saxutils import escape, quoteattr

FULL_LABELS = 24
THINNED_LABELS = 24
LINK_STATES = ("established", "connecting", "failed")
LINK_STYLE = {
    "established": 'stroke="#2e7d32" stroke-width="1.5"',
    "connecting": 'stroke="#f9a825" stroke-width="1.5" stroke-dasharray="6 4"',
    "failed": 'stroke="#c62828" stroke-width="1.5" stroke-dasharray="2 3"',
}
PATH_STYLE = {
    "direct": 'stroke="#1565c0" stroke-width="3"',
    "relayed": 'stroke="#ef6c00" stroke-width="3" stroke-dasharray="4 2"',
    "self": 'stroke="#263238" stroke-width="3"',
    "unknown": 'stroke="#90a4ae" stroke-width="1.5"',
}


@dataclass(frozen=True, slots=True)
class Node:
    name: str
    label: str
    detail: str
    path: str
    x: float
    y: float
    labelled: bool


def _xml_safe(text: str) -> str:
    """``text`` with the characters XML 1.0 cannot carry (controls, surrogates) as ``?``:
    a nickname is a peer's free text and must not make the picture unreadable."""
    return "".join(
        ch if ch in "\t\n\r" or ("\x20" <= ch <= "\ud7ff") or ("\ue000" <= ch <= "\ufffd")
        or ch >= "\U00010000" else "?"
        for ch in text
    )


def _text(value: Any, limit: int = 40) -> str:
    text = _xml_safe(str(value)) if value is not None else ""
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _link_state(raw: Any) -> str:
    return raw if raw in LINK_STATES else "connecting"


def layout(facts: Mapping[str, Any]) -> tuple[list[Node], float]:
    """Node positions on a circle and the canvas size (pure; exposed for tests)."""
    local = str(facts.get("local", ""))
    peers: list[Mapping[str, Any]] = list(facts.get("peers", []))
    known = {str(p.get("name")) for p in peers}
    for link in facts.get("links", []):  # peers known only by address get a node too
        for end in (str(link.get("a")), str(link.get("b"))):
            if end not in known:
                known.add(end)
                peers.append({"name": end, "nickname": "", "unknown": True})
    peers.sort(key=lambda p: (str(p.get("name")) != local, str(p.get("name"))))
    paths = {str(p.get("peer")): p for p in facts.get("paths", [])}
    count = len(peers)
    radius = max(140.0, count * 7.0)
    size = 2 * radius + 400  # room for labels on both sides
    centre = size / 2
    interesting = {local}
    for link in facts.get("links", []):
        if link.get("state") == "failed":
            interesting.update((str(link.get("a")), str(link.get("b"))))
    interesting.update(name for name, p in paths.items() if p.get("path") == "relayed")
    step = max(1, math.ceil(count / THINNED_LABELS))
    nodes = []
    for index, peer in enumerate(peers):
        name = _xml_safe(str(peer.get("name")))
        angle = -math.pi / 2 + 2 * math.pi * index / max(count, 1)
        if name == local:
            path = "self"
        elif peer.get("unknown"):
            path = "unknown"
        else:
            path = str(paths.get(name, {}).get("path", "unknown"))
        via = paths.get(name, {}).get("via")
        detail_parts = [f"{name}"]
        if peer.get("addresses") is not None:
            detail_parts.append(f"{peer.get('addresses')} addresses")
        if peer.get("containers") is not None:
            detail_parts.append(f"{peer.get('containers')} containers")
        if path == "relayed" and via:
            detail_parts.append(f"relayed via {via}")
        elif path in ("direct", "self"):
            detail_parts.append("ourselves" if path == "self" else "direct path")
        labelled = count <= FULL_LABELS or name in interesting or index % step == 0
        nodes.append(Node(
            name=name,
            label=_text(peer.get("nickname") or name, 24),
            detail=", ".join(_text(part, 60) for part in detail_parts),
            path=path,
            x=round(centre + radius * math.cos(angle), 1),
            y=round(centre + radius * math.sin(angle), 1),
            labelled=labelled,
        ))
    return nodes, size


def render_svg(facts: Mapping[str, Any]) -> str:
    """The picture of ``facts``: ``{"local", "peers": [{name, nickname, addresses,
    containers}], "links": [{a, b, state}], "paths": [{peer, path, via}]}``."""
    nodes, size = layout(facts)
    where = {node.name: node for node in nodes}
    full = len(nodes) <= FULL_LABELS
    node_radius = 9 if full else 5
    out: list[str] = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{size:.0f}" height="{size + 60:.0f}" '
        f'viewBox="0 0 {size:.0f} {size + 60:.0f}" font-family="sans-serif" font-size="12">',
        f"<title>meshrouter mesh: {len(nodes)} peers</title>",
        '<rect width="100%" height="100%" fill="#ffffff"/>',
        '<g class="links">',
    ]
    counts = dict.fromkeys(LINK_STATES, 0)
    for link in _unique_links(facts.get("links", [])):
        a, b = where.get(link[0]), where.get(link[1])
        if a is None or b is None:
            continue
        state = link[2]
        counts[state] += 1
        out.append(f'<line class="link {state}" x1="{a.x}" y1="{a.y}" x2="{b.x}" y2="{b.y}" '
                   f'{LINK_STYLE[state]} opacity="{0.9 if full else 0.45}">'
                   f"<title>{escape(a.label)} - {escape(b.label)}: {state}</title></line>")
    out.append("</g>")
    out.append('<g class="peers">')
    centre = size / 2
    for node in nodes:
        fill = "#263238" if node.path == "self" else ("#eceff1" if node.path == "unknown"
                                                      else "#ffffff")
        out.append(f'<g class="peer {node.path}" data-name={quoteattr(node.name)}>'
                   f"<title>{escape(node.detail)}</title>"
                   f'<circle cx="{node.x}" cy="{node.y}" r="{node_radius}" fill="{fill}" '
                   f"{PATH_STYLE[node.path]}/>")
        if node.labelled:
            dx, dy = node.x - centre, node.y - centre
            norm = math.hypot(dx, dy) or 1.0
            lx = round(node.x + dx / norm * (node_radius + 6), 1)
            ly = round(node.y + dy / norm * (node_radius + 6), 1)
            anchor = "start" if dx > 1 else ("end" if dx < -1 else "middle")
            two_lines = full and node.path != "unknown"
            if two_lines and dy < -1:  # above the circle: both lines go upwards
                ly -= 14
            out.append(f'<text x="{lx}" y="{ly}" text-anchor="{anchor}" '
                       f'dominant-baseline="middle">{escape(node.label)}</text>')
            if two_lines:
                out.append(f'<text x="{lx}" y="{ly + 14}" text-anchor="{anchor}" '
                           f'dominant-baseline="middle" fill="#546e7a" font-size="10">'
                           f"{escape(_short_detail(node))}</text>")
        out.append("</g>")
    out.append("</g>")
    out.extend(_legend(size, counts, len(nodes), sum(1 for n in nodes if n.labelled)))
    out.append("</svg>")
    return "\n".join(out)


def _short_detail(node: Node) -> str:
    parts = node.detail.split(", ")[1:]
    return ", ".join(parts)


def _unique_links(links: Sequence[Mapping[str, Any]]) -> list[tuple[str, str, str]]:
    """One link per pair of peers; the best state either side reports wins."""
    rank = {"established": 0, "connecting": 1, "failed": 2}
    best: dict[tuple[str, str], str] = {}
    for link in links:
        a, b = str(link.get("a")), str(link.get("b"))
        if a == b:
            continue
        key = (min(a, b), max(a, b))
        state = _link_state(link.get("state"))
        if key not in best or rank[state] < rank[best[key]]:
            best[key] = state
    return [(a, b, state) for (a, b), state in sorted(best.items())]


def _legend(size: float, counts: Mapping[str, int], peers: int, labelled: int) -> list[str]:
    y = size + 10
    items = [
        ("line", LINK_STYLE["established"], f"established ({counts['established']})"),
        ("line", LINK_STYLE["connecting"], f"connecting ({counts['connecting']})"),
        ("line", LINK_STYLE["failed"], f"failed ({counts['failed']})"),
        ("circle", PATH_STYLE["direct"], "direct data path"),
        ("circle", PATH_STYLE["relayed"], "relayed data path"),
    ]
    out = ['<g class="legend">']
    x = 10.0
    for shape, style, text in items:
        width = 40 + 7 * len(text)
        if x + width > size:  # next row
            x, y = 10.0, y + 20
        if shape == "line":
            out.append(f'<line x1="{x}" y1="{y}" x2="{x + 22}" y2="{y}" {style}/>')
        else:
            out.append(f'<circle cx="{x + 11}" cy="{y}" r="6" fill="#ffffff" {style}/>')
        out.append(f'<text x="{x + 28}" y="{y + 4}">{escape(text)}</text>')
        x += width
    note = f"{peers} peers" + ("" if labelled == peers else f", {labelled} labelled (hover a node)")
    out.append(f'<text x="10" y="{y + 22}" fill="#546e7a">{escape(note)}</text>')
    out.append("</g>")
    return out

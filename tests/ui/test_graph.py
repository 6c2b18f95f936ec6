"""The mesh picture (pure): parsed back as XML, checked element by element."""

from __future__ import annotations

import itertools
import math
import xml.etree.ElementTree as ET
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from meshrouter.ui.graph import THINNED_LABELS, layout, render_svg

NS = {"s": "http://www.w3.org/2000/svg"}


def names(n: int) -> list[str]:
    return [f"02:00:00:00:00:{i:02x}" for i in range(1, n + 1)]


def mesh(n: int) -> dict[str, Any]:
    peers = names(n)
    links = [{"a": a, "b": peers[(i + d) % n], "state": "established"}
             for i, a in enumerate(peers) for d in (1, 2)]
    return {
        "local": peers[0],
        "peers": [{"name": p, "nickname": f"host{i + 1}", "addresses": 16, "containers": i % 3}
                  for i, p in enumerate(peers)],
        "links": links,
        "paths": [{"peer": p, "path": "relayed" if i % 10 == 9 else "direct", "via": peers[1]}
                  for i, p in enumerate(peers) if i > 0],
    }


def parse(svg: str) -> ET.Element:
    return ET.fromstring(svg)


def peer_groups(root: ET.Element) -> dict[str, ET.Element]:
    return {g.get("data-name", ""): g for g in root.iterfind(".//s:g[@data-name]", NS)}


def test_three_peers_every_state_and_path_drawn() -> None:
    a, b, c = names(3)
    facts = {
        "local": a,
        "peers": [
            {"name": a, "nickname": "alpha", "addresses": 100, "containers": 2},
            {"name": b, "nickname": "bravo", "addresses": 50, "containers": 0},
            {"name": c, "nickname": "charlie", "addresses": 0, "containers": 1},
        ],
        "links": [
            {"a": a, "b": b, "state": "established"},
            {"a": b, "b": a, "state": "connecting"},  # same pair: the best state wins
            {"a": b, "b": c, "state": "established"},
            {"a": a, "b": c, "state": "connecting"},
            {"a": a, "b": "192.0.2.7:6783", "state": "failed"},
        ],
        "paths": [{"peer": b, "path": "direct", "via": b},
                  {"peer": c, "path": "relayed", "via": b}],
    }
    root = parse(render_svg(facts))
    groups = peer_groups(root)
    assert set(groups) == {a, b, c, "192.0.2.7:6783"}
    assert groups[a].get("class") == "peer self"
    assert groups[b].get("class") == "peer direct"
    assert groups[c].get("class") == "peer relayed"
    assert groups["192.0.2.7:6783"].get("class") == "peer unknown"
    title_c = groups[c].find("s:title", NS)
    assert title_c is not None
    assert title_c.text == f"{c}, 0 addresses, 1 containers, relayed via {b}"
    texts = ["".join(t.itertext()) for t in root.iterfind(".//s:g[@class='peers']//s:text", NS)]
    assert {"alpha", "bravo", "charlie", "192.0.2.7:6783"} <= set(texts)
    assert "100 addresses, 2 containers, ourselves" in texts
    states = sorted(line.get("class", "") for line in root.iterfind(".//s:line[@class]", NS))
    assert states == ["link connecting", "link established", "link established", "link failed"]
    legend = ["".join(t.itertext()) for t in root.iterfind(".//s:g[@class='legend']/s:text", NS)]
    assert "established (2)" in legend and "failed (1)" in legend and "4 peers" in legend


def test_names_are_escaped() -> None:
    facts = mesh(3)
    facts["peers"][1]["nickname"] = '<s>"x"</s>&'
    svg = render_svg(facts)
    assert "<s>" not in svg
    root = parse(svg)
    texts = ["".join(t.itertext()) for t in root.iter(f"{{{NS['s']}}}text")]
    assert '<s>"x"</s>&' in texts


def test_hundred_peers_thin_labels_and_keep_tooltips() -> None:
    facts = mesh(100)
    facts["links"].append({"a": facts["local"], "b": "192.0.2.9:6783", "state": "failed"})
    root = parse(render_svg(facts))
    groups = peer_groups(root)
    assert len(groups) == 101
    labelled = {name for name, g in groups.items() if g.find("s:text", NS) is not None}
    relayed = {p["peer"] for p in facts["paths"] if p["path"] == "relayed"}
    interesting = {facts["local"], "192.0.2.9:6783"} | relayed
    assert interesting <= labelled
    assert len(labelled) <= THINNED_LABELS + len(interesting)
    assert all(g.find("s:title", NS) is not None for g in groups.values())
    nodes, size = layout(facts)
    closest = min(math.dist((p.x, p.y), (q.x, q.y)) for p, q in itertools.combinations(nodes, 2))
    assert closest > 2 * 5 + 20, closest  # node radius 5 at this size: clearly apart
    assert all(0 < n.x < size and 0 < n.y < size for n in nodes)


def test_ourselves_at_the_top_and_order_stable() -> None:
    facts = mesh(7)
    nodes, _ = layout(facts)
    assert nodes[0].name == facts["local"]
    assert nodes[0].y == min(n.y for n in nodes)
    shuffled = dict(facts, peers=list(reversed(facts["peers"])))
    assert layout(shuffled) == layout(facts)


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 9), st.integers(0, 9),
                          st.sampled_from(["established", "connecting", "failed", "bogus"])),
                max_size=30),
       st.lists(st.text(max_size=12), min_size=1, max_size=10))
def test_any_facts_give_well_formed_svg(links: list[tuple[int, int, str]],
                                        nicks: list[str]) -> None:
    peers = names(len(nicks))
    facts = {"local": peers[0],
             "peers": [{"name": p, "nickname": n} for p, n in zip(peers, nicks, strict=True)],
             "links": [{"a": f"02:00:00:00:00:{a:02x}", "b": f"02:00:00:00:00:{b:02x}",
                        "state": s} for a, b, s in links],
             "paths": []}
    root = parse(render_svg(facts))
    pairs = {(min(a, b), max(a, b)) for a, b, _ in links if a != b}
    assert len(list(root.iterfind(".//s:g[@class='links']/s:line", NS))) == len(pairs)

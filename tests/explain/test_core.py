"""The layer walk (pure): each injected fault is named as the failing layer."""

from __future__ import annotations

import copy
import itertools
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from meshrouter.explain.core import LAYERS, explain, route_between

A, B, C = "02:00:00:00:00:0a", "02:00:00:00:00:0b", "02:00:00:00:00:0c"
WEB = {"container_id": "aaaa1111bbbb2222", "name": "web", "ip": "10.32.0.2",
       "mac": "aa:00:00:00:00:01", "host": A}
DB = {"container_id": "cccc3333dddd4444", "name": "db", "ip": "10.32.0.3",
      "mac": "aa:00:00:00:00:02", "host": C}


def good_facts() -> dict[str, Any]:
    """web on A, db on C; A-B-C (relayed via B); A's flow table known; DNS has both."""
    return {
        "local": A,
        "peers": {A: "alpha", B: "bravo", C: "charlie"},
        "links": [[A, B], [B, A], [B, C], [C, B]],
        "endpoints": [WEB, DB],
        "flows": {A: {"healthy": True, "reason": "", "macs": [WEB["mac"], DB["mac"]]}},
        "dns": {"domain": "weave.local.",
                "names": {"web.weave.local.": ["10.32.0.2"], "db.weave.local.": ["10.32.0.3"]}},
    }


def by_layer(result: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {entry["layer"]: entry for entry in result["layers"]}


def test_a_healthy_pair_passes_every_layer_it_can_see() -> None:
    result = explain(good_facts(), "web", "db")
    layers = by_layer(result)
    assert [entry["layer"] for entry in result["layers"]] == list(LAYERS)
    assert result["failing"] is None
    assert layers["endpoints"]["ok"] is True
    assert layers["route"]["hops"] == [A, B, C]
    assert "relayed via bravo" in layers["route"]["detail"]
    assert layers["flows"]["ok"] is True and layers["flows"]["hosts"] == [f"alpha({A})"]
    assert f"not visible from here: charlie({C})" in layers["flows"]["detail"]
    assert layers["dns"]["detail"] == "db.weave.local. -> 10.32.0.3"
    assert layers["policy"]["ok"] is True
    assert result["verdict"] == "every layer passes"
    assert result["dst"]["container_id"] == DB["container_id"]


@pytest.mark.parametrize(("src", "dst"), [
    ("web", "db"), ("aaaa1111bbbb2222", "cccc3333dddd4444"), ("aaaa", "cccc"),
    ("10.32.0.2", "10.32.0.3"), ("web.weave.local", "db.weave.local."),
])
def test_containers_are_found_by_name_id_prefix_or_address(src: str, dst: str) -> None:
    result = explain(good_facts(), src, dst)
    assert result["failing"] is None
    assert result["src"]["name"] == "web" and result["dst"]["name"] == "db"


def test_unknown_container_fails_the_endpoints_layer() -> None:
    result = explain(good_facts(), "web", "cache")
    assert result["failing"] == "endpoints"
    assert "DST: 'cache' is no container ID, name or address" in result["verdict"]
    assert by_layer(result)["route"]["ok"] is None


def test_an_ambiguous_name_asks_for_an_id() -> None:
    facts = good_facts()
    facts["endpoints"].append(dict(DB, container_id="eeee5555", ip="10.32.0.4", host=B))
    result = explain(facts, "web", "db")
    assert result["failing"] == "endpoints"
    assert "names 2 containers" in result["verdict"]
    assert explain(facts, "web", "10.32.0.4")["dst"]["host"] == B


def test_no_route_when_a_link_is_reported_by_one_side_only() -> None:
    facts = good_facts()
    facts["links"].remove([C, B])
    result = explain(facts, "web", "db")
    assert result["failing"] == "route"
    assert result["verdict"] == (f"route: no route between alpha({A}) and charlie({C}): "
                                 "no chain of established links joins them")
    assert by_layer(result)["flows"]["ok"] is None


def test_no_flow_for_the_destination_mac() -> None:
    facts = good_facts()
    facts["flows"][A]["macs"] = [WEB["mac"]]
    result = explain(facts, "web", "db")
    assert result["failing"] == "flows"
    assert f"alpha({A}) has no forwarding flow for db (10.32.0.3) (MAC aa:00:00:00:00:02)" \
        in result["verdict"]


def test_a_degraded_datapath_fails_the_flows_layer() -> None:
    facts = good_facts()
    facts["flows"][A].update(healthy=False, reason="ovs-vswitchd is not running")
    result = explain(facts, "web", "db")
    assert result["failing"] == "flows"
    assert "ovs-vswitchd is not running" in result["verdict"]


def test_no_dns_record() -> None:
    facts = good_facts()
    del facts["dns"]["names"]["db.weave.local."]
    result = explain(facts, "web", "db")
    assert result["failing"] == "dns"
    assert result["verdict"] == "dns: no DNS record for db.weave.local.: the name does not resolve"


def test_a_record_for_another_address_is_not_enough() -> None:
    facts = good_facts()
    facts["dns"]["names"]["db.weave.local."] = ["10.32.0.9"]
    assert explain(facts, "web", "db")["failing"] == "dns"


def test_flows_not_visible_are_reported_not_failed() -> None:
    facts = good_facts()
    facts["flows"] = {}
    result = explain(facts, "web", "db")
    assert result["failing"] is None
    assert by_layer(result)["flows"]["ok"] is None
    assert result["verdict"].startswith("no failing layer seen from here")


def test_same_host_needs_no_link() -> None:
    facts = good_facts()
    facts["endpoints"][1] = dict(DB, host=A)
    facts["links"] = []
    layers = by_layer(explain(facts, "web", "db"))
    assert layers["route"]["ok"] is True and layers["route"]["hops"] == [A]


@given(st.lists(st.tuples(st.integers(0, 5), st.integers(0, 5)), max_size=25),
       st.integers(0, 5), st.integers(0, 5))
def test_a_route_uses_only_links_both_ends_report(
    edges: list[tuple[int, int]], src: int, dst: int
) -> None:
    links = [[str(a), str(b)] for a, b in edges]
    path = route_between(links, str(src), str(dst))
    said = {(a, b) for a, b in links}
    if path is not None:
        assert path[0] == str(src) and path[-1] == str(dst)
        assert len(set(path)) == len(path)
        for here, there in itertools.pairwise(path):
            assert (here, there) in said and (there, here) in said
    # with every link mutual, a connected pair always has a route
    mutual = links + [[b, a] for a, b in links]
    reach = {str(src)}
    changed = True
    while changed:
        changed = False
        for a, b in mutual:
            if a in reach and b not in reach:
                reach.add(b)
                changed = True
    assert (route_between(mutual, str(src), str(dst)) is not None) == (str(dst) in reach)


def test_facts_are_not_mutated() -> None:
    facts = good_facts()
    before = copy.deepcopy(facts)
    explain(facts, "web", "db")
    assert facts == before

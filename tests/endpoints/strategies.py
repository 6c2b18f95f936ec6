"""Hypothesis strategies for endpoint entries and sets (small domains, many collisions)."""

from __future__ import annotations

from hypothesis import strategies as st

from meshrouter.endpoints.model import Endpoint, make_endpoint
from meshrouter.endpoints.state import EndpointSet
from meshrouter.names import PeerName

OWNERS = [PeerName(n) for n in (0x0A0000000001, 0x0A0000000002, 0x0A0000000003)]


@st.composite
def endpoints(draw: st.DrawFn) -> Endpoint:
    return make_endpoint(
        draw(st.sampled_from(OWNERS)),
        draw(st.sampled_from(["c1", "c2", "c3"])),
        draw(st.sampled_from(["02:00:00:00:00:01", "02:00:00:00:00:02"])),
        draw(st.sampled_from(["10.0.0.1", "10.0.0.2"])),
        draw(st.sampled_from(["", "web"])),
        draw(st.integers(1, 6)),
        draw(st.booleans()),
    )


@st.composite
def endpoint_sets(draw: st.DrawFn) -> EndpointSet:
    floors = draw(st.dictionaries(st.sampled_from(OWNERS), st.integers(0, 4), max_size=2))
    return EndpointSet.of(draw(st.lists(endpoints(), max_size=8)), floors)

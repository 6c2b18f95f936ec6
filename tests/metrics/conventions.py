"""The Prometheus naming conventions, checked on parsed families (no meshrouter code)."""

from __future__ import annotations

from prometheus_client.metrics_core import Metric
from prometheus_client.parser import text_string_to_metric_families

# The families issue 13 asks for (one or more per item of its list).
REQUIRED = {
    "meshrouter_connections",  # by state
    "meshrouter_connection_terminations",  # by reason
    "meshrouter_gossip_messages",  # per channel and direction
    "meshrouter_gossip_bytes",
    "meshrouter_topology_changes",
    "meshrouter_route_computations",
    "meshrouter_peers",
    "meshrouter_flow_apply_duration_seconds",
    "meshrouter_datapath_healthy",
}
BAD_UNITS = ("percent", "milli", "_ms", "micro", "kilo", "mega", "minutes", "hours")


def parse(text: str) -> dict[str, Metric]:
    return {family.name: family for family in text_string_to_metric_families(text)}


def value(families: dict[str, Metric], name: str, **labels: str) -> float:
    """The value of the one sample ``name`` with exactly these labels (0 if absent)."""
    found = [s.value for f in families.values() for s in f.samples
             if s.name == name and s.labels == labels]
    assert len(found) <= 1, f"{name}{labels} appears {len(found)} times"
    return found[0] if found else 0.0


def check_conventions(families: dict[str, Metric]) -> None:
    for name, family in families.items():
        assert name.startswith("meshrouter_"), name
        assert family.documentation, f"{name} has no help text"
        assert not any(bad in name for bad in BAD_UNITS), f"{name}: use base units, ratios"
        for sample in family.samples:
            if family.type == "counter":
                assert sample.name in (f"{name}_total", f"{name}_created"), sample.name
                assert sample.value >= 0
            if family.type == "histogram":
                assert name.endswith("_seconds") or name.endswith("_bytes"), name
            if name.endswith("_ratio"):
                assert 0.0 <= sample.value <= 1.0, f"{name} = {sample.value}"
        if family.type != "counter":
            assert not name.endswith("_total"), f"{name} is a {family.type} named like a counter"

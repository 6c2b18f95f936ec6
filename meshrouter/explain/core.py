"""Theory of operation: a walk down the layers between two containers, over plain facts.

``explain(facts, src, dst)`` answers "why can't SRC reach DST?" by checking,
in order, the layers a packet and a name lookup depend on, and naming the
first that fails:

1. ``endpoints`` -- both containers are in the endpoint table (by ID or unique
   ID prefix, name, or IP address), each exactly once;
2. ``route`` -- their hosts are connected by established links (both sides
   report the link, as routing requires): the hops are listed;
3. ``flows`` -- on each host of the path whose flow table we hold, the
   datapath is healthy and has forwarding flows for both MACs (there and
   back); hosts whose tables we do not hold are named as not checked;
4. ``dns`` -- DST's name has a record pointing at DST's address;
5. ``policy`` -- no policy layer exists yet: always open, said so.

A layer is ``ok`` True (passed), False (failed: the walk names it and stops
judging), or None (not applicable or not visible from here).  ``facts`` is
JSON-able (built by the explain service from one router's view, or by a
test), so every fault is injected by editing data; no clock, no I/O.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping, Sequence
from typing import Any

from meshrouter.dns.names import qualify
from meshrouter.errors import InvalidRequestError

LAYERS = ("endpoints", "route", "flows", "dns", "policy")
MIN_ID_PREFIX = 4


def layer(name: str, ok: bool | None, detail: str, **extra: Any) -> dict[str, Any]:
    return {"layer": name, "ok": ok, "detail": detail, **extra}


def resolve(endpoints: Sequence[Mapping[str, Any]], text: str,
            domain: str | None) -> tuple[Mapping[str, Any] | None, str]:
    """The endpoint ``text`` names (ID, ID prefix, name or IP), or None and why not."""
    wanted = text.strip()
    if not wanted:
        return None, "an empty container name"
    exact = [e for e in endpoints if e.get("container_id") == wanted
             or str(e.get("ip", "")).split("/")[0] == wanted]
    if not exact:
        exact = [e for e in endpoints if _same_name(e.get("name"), wanted, domain)]
    if not exact and len(wanted) >= MIN_ID_PREFIX:
        exact = [e for e in endpoints if str(e.get("container_id", "")).startswith(wanted)]
    if len(exact) == 1:
        return exact[0], ""
    if not exact:
        return None, (f"{wanted!r} is no container ID, name or address in the endpoint table "
                      f"({len(endpoints)} containers known)")
    ids = ", ".join(str(e.get("container_id", ""))[:12] for e in exact[:5])
    return None, f"{wanted!r} names {len(exact)} containers ({ids}): give an ID or address"


def _same_name(name: Any, wanted: str, domain: str | None) -> bool:
    if not name:
        return False
    if str(name) == wanted:
        return True
    if domain is None:
        return False
    try:
        return qualify(str(name), domain) == qualify(wanted, domain)
    except InvalidRequestError:
        return False


def route_between(links: Sequence[Sequence[str]], src: str, dst: str) -> list[str] | None:
    """The shortest host path over links both ends report, or None (breadth-first)."""
    said = {(str(a), str(b)) for a, b in links}
    adjacency: dict[str, list[str]] = {}
    for a, b in sorted(said):
        if (b, a) in said:
            adjacency.setdefault(a, []).append(b)
    previous: dict[str, str | None] = {src: None}
    queue = deque([src])
    while queue:
        here = queue.popleft()
        if here == dst:
            path = [here]
            while (step := previous[path[-1]]) is not None:
                path.append(step)
            return path[::-1]
        for there in adjacency.get(here, []):
            if there not in previous:
                previous[there] = here
                queue.append(there)
    return None


def explain(facts: Mapping[str, Any], src: str, dst: str) -> dict[str, Any]:
    """The layer walk for ``src`` -> ``dst`` (see the module docstring)."""
    endpoints: list[Mapping[str, Any]] = list(facts.get("endpoints", []))
    dns: Mapping[str, Any] | None = facts.get("dns")
    domain = str(dns["domain"]) if dns else None
    nick: Mapping[str, str] = facts.get("peers", {})
    a, why_a = resolve(endpoints, src, domain)
    b, why_b = resolve(endpoints, dst, domain)
    layers = [_endpoints_layer(a, why_a, b, why_b)]
    path: list[str] | None = None
    if a is not None and b is not None:
        host_a, host_b = str(a.get("host")), str(b.get("host"))
        path = route_between(facts.get("links", []), host_a, host_b)
        layers.append(_route_layer(path, host_a, host_b, nick))
    if a is not None and b is not None and path is not None:
        layers.append(_flows_layer(facts, a, b, path, nick))
    if b is not None:
        layers.append(_dns_layer(dns, b))
    layers.append(layer("policy", True, "no policy is enforced: all traffic between "
                        "containers of the mesh is allowed"))
    done = {entry["layer"] for entry in layers}
    for name in LAYERS:
        if name not in done:
            layers.append(layer(name, None, "not checked: an earlier layer failed"))
    layers.sort(key=lambda entry: LAYERS.index(entry["layer"]))
    failing = next((entry for entry in layers if entry["ok"] is False), None)
    unknown = [entry["layer"] for entry in layers if entry["ok"] is None
               and entry.get("unknown")]
    if failing is not None:
        verdict = f"{failing['layer']}: {failing['detail']}"
    elif unknown:
        verdict = ("no failing layer seen from here; not visible from here: "
                   + ", ".join(unknown))
    else:
        verdict = "every layer passes"
    return {
        "src": _brief(a), "dst": _brief(b),
        "failing": failing["layer"] if failing is not None else None,
        "verdict": verdict,
        "layers": layers,
    }


def _brief(endpoint: Mapping[str, Any] | None) -> dict[str, Any] | None:
    if endpoint is None:
        return None
    return {key: endpoint.get(key) for key in ("container_id", "name", "ip", "mac", "host")}


def _endpoints_layer(a: Mapping[str, Any] | None, why_a: str,
                     b: Mapping[str, Any] | None, why_b: str) -> dict[str, Any]:
    problems = []
    if a is None:
        problems.append(f"SRC: {why_a}")
    if b is None:
        problems.append(f"DST: {why_b}")
    if problems:
        return layer("endpoints", False, "; ".join(problems))
    assert a is not None and b is not None
    if a.get("container_id") == b.get("container_id"):
        return layer("endpoints", False, "SRC and DST are the same container")
    return layer("endpoints", True, f"{_label(a)} on {a.get('host')}, "
                 f"{_label(b)} on {b.get('host')}")


def _label(endpoint: Mapping[str, Any]) -> str:
    name = endpoint.get("name") or str(endpoint.get("container_id", ""))[:12]
    return f"{name} ({str(endpoint.get('ip', '')).split('/')[0]})"


def _route_layer(path: list[str] | None, host_a: str, host_b: str,
                 nick: Mapping[str, str]) -> dict[str, Any]:
    if path is None:
        return layer("route", False, f"no route between {_host(host_a, nick)} and "
                     f"{_host(host_b, nick)}: no chain of established links joins them")
    if len(path) == 1:
        return layer("route", True, f"both on {_host(host_a, nick)}", hops=path)
    relays = ", ".join(_host(p, nick) for p in path[1:-1])
    how = "direct" if len(path) == 2 else f"relayed via {relays}"
    return layer("route", True, f"{' -> '.join(_host(p, nick) for p in path)} ({how})", hops=path)


def _host(name: str, nick: Mapping[str, str]) -> str:
    return f"{nick[name]}({name})" if nick.get(name) else name


def _flows_layer(facts: Mapping[str, Any], a: Mapping[str, Any], b: Mapping[str, Any],
                 path: list[str], nick: Mapping[str, str]) -> dict[str, Any]:
    tables: Mapping[str, Mapping[str, Any]] = facts.get("flows", {})
    checked: list[str] = []
    unseen: list[str] = []
    for host in dict.fromkeys([path[0], path[-1]]):  # where the per-MAC flows live
        table = tables.get(host)
        if table is None:
            unseen.append(_host(host, nick))
            continue
        if not table.get("healthy", True):
            return layer("flows", False, f"the datapath of {_host(host, nick)} is degraded: "
                         f"{table.get('reason', '')}", hosts=checked)
        macs = set(table.get("macs", []))
        for end, other in ((b, a), (a, b)):
            mac = str(end.get("mac", "")).lower()
            if mac not in macs:
                return layer("flows", False, f"{_host(host, nick)} has no forwarding flow for "
                             f"{_label(end)} (MAC {mac}): traffic from {_label(other)} "
                             "is dropped there", hosts=checked)
        checked.append(_host(host, nick))
    if unseen and not checked:
        return layer("flows", None, "flow tables of " + ", ".join(unseen)
                     + " are not visible from here: run explain on that router",
                     unknown=True, hosts=checked)
    detail = "forwarding flows for both MACs on " + ", ".join(checked)
    if unseen:
        detail += "; not visible from here: " + ", ".join(unseen)
    return layer("flows", True, detail, hosts=checked)


def _dns_layer(dns: Mapping[str, Any] | None, b: Mapping[str, Any]) -> dict[str, Any]:
    name = b.get("name")
    if dns is None:
        return layer("dns", None, "DNS is off on this router")
    if not name:
        return layer("dns", None, "DST has no name: reach it by address")
    try:
        fqdn = qualify(str(name), str(dns["domain"]))
    except InvalidRequestError as exc:
        return layer("dns", False, f"DST's name cannot be a DNS name: {exc}")
    ip = str(b.get("ip", "")).split("/")[0]
    addresses = list(dns.get("names", {}).get(fqdn, []))
    if ip in addresses:
        others = len(addresses) - 1
        more = f" (and {others} other address{'es' if others != 1 else ''})" if others else ""
        return layer("dns", True, f"{fqdn} -> {ip}{more}")
    if addresses:
        return layer("dns", False, f"{fqdn} answers {', '.join(addresses)} but not DST's {ip}")
    return layer("dns", False, f"no DNS record for {fqdn}: the name does not resolve")

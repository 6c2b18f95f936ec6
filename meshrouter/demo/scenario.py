"""What ``meshrouter demo`` builds and shows, step by step, through the real CLI.

Everything a user would type is typed here: ``meshrouter launch peer`` in each
host namespace, ``attach``, ``dns-add``, ``status``, ``ps``; containers ping
each other *by name*, resolved by their host router's DNS server.  How a
container reaches that server: ``meshrouter expose`` gives each host an
overlay address (Weave's "expose"), where its router's DNS server answers
overlay clients (``status dns`` names it), and each container's
``/etc/netns/<ns>/resolv.conf`` names that address with ``search mesh.local``.

``build`` raises ``DemoError`` when the lab cannot be made; ``show`` runs the
checks and returns one ``Check`` per claim, each passed or failed with the why.
Progress goes through a ``Reporter`` (the CLI draws it with rich).
"""

from __future__ import annotations

import json
import sys
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from functools import partial
from itertools import permutations
from pathlib import Path
from typing import Any, Protocol

from meshrouter.demo.lab import API, DOMAIN, Container, Host, Lab
from meshrouter.errors import DemoError

HOSTS = 3
KINDS = ("web", "db")
CONVERGE = 60.0
"""Seconds a claim may take to become true (mesh, flows, a relay after a cut)."""


@dataclass(frozen=True)
class Check:
    title: str
    ok: bool
    detail: str


class Reporter(Protocol):
    def step(self, title: str) -> AbstractContextManager[None]:
        """Shows ``title`` while the block runs, then whether it finished."""
        ...

    def show(self, title: str, text: str) -> None:
        """Output of a command the user may want to see (a table, a listing)."""
        ...

    def check(self, check: Check) -> None: ...


def wait_for(predicate: Callable[[], bool], timeout: float = CONVERGE,
             interval: float = 0.5) -> bool:
    deadline = time.monotonic() + timeout
    while True:
        if predicate():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval)


# -- building ------------------------------------------------------------------------------


def build(lab: Lab, report: Reporter) -> None:
    with report.step(f"underlay bridge and {HOSTS} host namespaces"):
        lab.add_underlay()
        hosts = [lab.add_host() for _ in range(HOSTS)]
    with report.step("a router in each host, each starting its own OVS (userspace datapath)"):
        first = hosts[0]
        for host in hosts:
            lab.start_router(host, [] if host is first else [f"{first.ip}:6783"])
        for host in hosts:
            lab.wait_router(host)
    with report.step("routers meshed"):
        if not wait_for(lambda: all(_peer_count(h) == HOSTS for h in hosts), 45):
            raise DemoError("the routers did not form a mesh of "
                            f"{HOSTS} within 45 s:\n{hosts[0].cli('status', 'connections')}")
    with report.step("each host on the overlay (`meshrouter expose`), for its router's DNS"):
        for host in hosts:
            host.cli_json("expose")
            if not wait_for(partial(_has_nameserver, host), 20, 0.2):
                raise DemoError(f"{host.nickname}'s DNS names no address for containers:\n"
                                f"{host.cli('status', 'dns')}")
            host.dns_ip = _nameserver(host)
    with report.step(f"{len(KINDS) * HOSTS} containers attached with `meshrouter attach`"):
        for host in hosts:
            for kind in KINDS:
                c = lab.add_container(host, f"{kind}-{host.index}")
                c.ip, c.mac = lab.attach(host, c.name, c.ns, name=c.name)
    with report.step("name `web` also registered for web-1 and web-2 (`meshrouter dns-add`)"):
        for host in hosts[:2]:
            web = host.containers[0]
            try:
                host.cli("dns-add", "web", web.name)
            except DemoError as exc:
                # the container-ID form failed: register the address, and say so
                host.cli("dns-add", "web", web.ip)
                why = str(exc).splitlines()[-1].rsplit("error:", 1)[-1].strip()
                report.show("note", f"dns-add web {web.name} failed ({why}); "
                            f"registered its address {web.ip} instead")


def _has_nameserver(host: Host) -> bool:
    return bool(_nameserver(host))


def _nameserver(host: Host) -> str:
    """The address the host's DNS server answers containers on (``status dns``)."""
    try:
        data = host.cli_json("status", "dns")
    except DemoError:
        return ""
    return str(data.get("nameserver") or "") if isinstance(data, dict) else ""


def _peer_count(host: Host) -> int:
    try:
        data = host.cli_json("status")
    except DemoError:
        return 0
    return int(data.get("peers", 0)) if isinstance(data, dict) else 0


# -- showing -------------------------------------------------------------------------------


def show(lab: Lab, report: Reporter, snapshot_dir: Path) -> list[Check]:
    steps: list[Callable[[Lab, Reporter], Check]] = [
        status_table, ping_all_by_name, dns_load_balancing, relay_when_cut,
        direct_when_restored,
    ]
    checks = []
    for step in steps:
        try:
            check = step(lab, report)
        except DemoError as exc:
            check = Check(step.__name__.replace("_", " "), False, str(exc))
        report.check(check)
        checks.append(check)
    check = where_to_look(lab, report, snapshot_dir)
    report.check(check)
    return [*checks, check]


def _get(url: str, attempts: int = 20) -> tuple[bytes, str]:
    """(body, "") or (b"", why): the forwarder may need a moment to start."""
    why = ""
    for _ in range(attempts):
        try:
            with urllib.request.urlopen(url, timeout=10) as answer:
                body = bytes(answer.read())
            return (body, "") if body.strip() else (b"", "empty answer")
        except urllib.error.HTTPError as exc:
            return b"", f"HTTP {exc.code}"
        except OSError as exc:
            why = str(exc)
            time.sleep(0.25)
    return b"", why


def containers(lab: Lab) -> list[Container]:
    return [c for h in lab.hosts for c in h.containers]


def status_table(lab: Lab, report: Reporter) -> Check:
    h1 = lab.hosts[0]
    report.show(f"meshrouter status  (on {h1.nickname})", h1.cli("status"))
    report.show(f"meshrouter status peers  (on {h1.nickname})", h1.cli("status", "peers"))
    report.show(f"meshrouter ps  (on {h1.nickname})", h1.cli("ps"))
    listed = h1.cli_json("ps")
    ips = {str(row.get("ip", "")).split("/")[0] for row in listed} if isinstance(
        listed, list) else set()
    missing = [c.name for c in containers(lab) if c.ip not in ips]
    return Check("status table: every container listed by `ps`", not missing,
                 f"missing {missing}" if missing else f"{len(ips)} endpoints in the mesh")


def _ping_pairs(pairs: list[tuple[Container, Container]],
                timeout: float = CONVERGE) -> list[tuple[Container, Container]]:
    """Ping every pair by name until all answered or ``timeout``; the pairs that never did."""
    pending = list(pairs)
    deadline = time.monotonic() + timeout
    while pending:
        pending = [(a, b) for a, b in pending if not a.ping(b.name)]
        if not pending or time.monotonic() >= deadline:
            break
        time.sleep(0.5)
    return pending


def ping_all_by_name(lab: Lab, report: Reporter) -> Check:
    everyone = containers(lab)
    pairs = list(permutations(everyone, 2))
    with report.step(f"every container pings every other one by name ({len(pairs)} pairs)"):
        failed = _ping_pairs(pairs)
    title = f"{len(pairs) - len(failed)}/{len(pairs)} pairs ping by name (DNS of each host)"
    return Check(title, not failed,
                 "failed: " + ", ".join(f"{a.name}->{b.name}" for a, b in failed)
                 if failed else f"names resolved under {DOMAIN} by each host's router")


def dns_load_balancing(lab: Lab, report: Reporter) -> Check:
    web1, web2 = lab.hosts[0].containers[0], lab.hosts[1].containers[0]
    client = lab.hosts[-1].containers[-1]
    count = 20
    with report.step(f"{client.name} asks {count} times for web.{DOMAIN}"):
        out = client.exec(sys.executable, "-m", "meshrouter.demo.dnsprobe",
                          f"web.{DOMAIN}", str(count))
        answers: list[list[str]] = json.loads(out)["answers"]
        pinged = client.ping("web")
    want = {web1.ip, web2.ip}
    firsts = Counter(a[0] for a in answers if a)
    complete = all(set(a) == want for a in answers)
    lines = [f"web.{DOMAIN} first answer: " + ", ".join(
        f"{ip} ({_owner(lab, ip)}) {n}x" for ip, n in sorted(firsts.items()))]
    report.show("DNS load balancing", "\n".join(lines))
    ok = complete and set(firsts) == want and pinged
    detail = (f"both {sorted(want)} in every answer, each first "
              f"{'/'.join(str(firsts[ip]) for ip in sorted(want))} of {count} times"
              if ok else f"answers {answers[:3]}..., ping web {'ok' if pinged else 'failed'}")
    return Check("DNS load balancing over web-1 and web-2", ok, detail)


def _owner(lab: Lab, ip: str) -> str:
    return next((c.name for c in containers(lab) if c.ip == ip), "?")


def _paths(host: Host) -> dict[str, dict[str, Any]]:
    """nickname -> data path row (direct, or relayed via whom) from ``status peers``."""
    peers = host.cli_json("status", "peers")
    if not isinstance(peers, list):
        return {}
    names = {p["name"]: p["nickname"] for p in peers}
    rows = {}
    for p in peers:
        path = p.get("data_path") or {}
        if path:
            rows[p["nickname"]] = {**path, "via_nickname": names.get(path.get("via"), "?")}
    return rows


def _path_is(host: Host, peer: str, path: str, via: str) -> bool:
    try:
        row = _paths(host).get(peer, {})
    except DemoError:
        return False
    return bool(row.get("path") == path and row.get("via_nickname") == via)


def _cross_pairs(lab: Lab) -> list[tuple[Container, Container]]:
    h1, h3 = lab.hosts[0], lab.hosts[2]
    return [(a, b) for a in h1.containers for b in h3.containers] + [
        (b, a) for a in h1.containers for b in h3.containers]


def relay_when_cut(lab: Lab, report: Reporter) -> Check:
    h1, h3 = lab.hosts[0], lab.hosts[2]
    with report.step(f"underlay link {h1.nickname} <-> {h3.nickname} cut: waiting for the relay"):
        lab.block(h1, h3)
        relayed = wait_for(lambda: _path_is(h1, "h3", "relayed", "h2")
                           and _path_is(h3, "h1", "relayed", "h2"))
        failed = _ping_pairs(_cross_pairs(lab))
    report.show(f"meshrouter status peers  (on {h1.nickname}, {h1.nickname}-{h3.nickname} cut)",
                h1.cli("status", "peers"))
    ok = relayed and not failed
    detail = ("h1 <-> h3 relayed via h2; " if relayed else "status peers never showed the relay; ")
    detail += (f"all {len(_cross_pairs(lab))} h1/h3 pairs ping by name" if not failed else
               "failed: " + ", ".join(f"{a.name}->{b.name}" for a, b in failed))
    return Check("relayed path when an underlay link is cut", ok, detail)


def direct_when_restored(lab: Lab, report: Reporter) -> Check:
    h1, h3 = lab.hosts[0], lab.hosts[2]
    with report.step(f"underlay link {h1.nickname} <-> {h3.nickname} restored: "
                     "waiting for the direct path"):
        lab.unblock(h1, h3)
        direct = wait_for(lambda: _path_is(h1, "h3", "direct", "h3")
                          and _path_is(h3, "h1", "direct", "h1"))
        failed = _ping_pairs(_cross_pairs(lab))
    ok = direct and not failed
    detail = ("h1 <-> h3 direct again; " if direct else "status peers never showed it direct; ")
    detail += ("pings by name ok" if not failed else
               "failed: " + ", ".join(f"{a.name}->{b.name}" for a, b in failed))
    return Check("direct path again when the link is restored", ok, detail)


def where_to_look(lab: Lab, report: Reporter, snapshot_dir: Path) -> Check:
    """The topology picture and the status page of h1, through a forwarder from
    127.0.0.1 here into h1's namespace (``forward.py``): fetched once (snapshots
    kept in ``snapshot_dir``) and the URLs, live for as long as the lab runs."""
    h1 = lab.hosts[0]
    saved, problems = [], []
    port = lab.start_forwarder(h1)
    base = f"http://127.0.0.1:{port}"
    for path, file in (("/graph.svg", "graph.svg"), ("/", "status.html")):
        body, problem = _get(base + path)
        if problem:
            problems.append(f"GET {path}: {problem}")
            continue
        target = snapshot_dir / file
        target.write_bytes(body)
        saved.append(str(target))
    text = "\n".join([
        f"status page:      {base}/",
        f"topology picture: {base}/graph.svg",
        f"(h1's API, {API} inside {h1.ns}, forwarded; live while the lab runs: "
        "`meshrouter demo --keep`)",
        *(f"snapshot: {s}" for s in saved),
    ])
    report.show("where to look", text)
    return Check("topology picture and status page answer", not problems,
                 "; ".join(problems) if problems else ", ".join(saved))

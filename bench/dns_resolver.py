"""Resolver core alone: answers per second for 1,000 names (no sockets).

Cases: a positive A answer (fast path, 1 and 4 addresses), the same through the
dnslib path, NXDOMAIN (dnslib path), PTR, and the forward decision for an
outside name.  Also the cost of rebuilding the view after a change.

    python bench/dns_resolver.py
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable

from dnslib import EDNS0, DNSRecord

from meshrouter.dns.core import DnsCore
from meshrouter.dns.records import RecordKey
from meshrouter.dns.resolver import Resolver
from meshrouter.names import PeerName

NAMES = 1000


def rate(fn: Callable[[], object], seconds: float = 1.0) -> float:
    count = 0
    start = time.perf_counter()
    while (elapsed := time.perf_counter() - start) < seconds:
        for _ in range(200):
            fn()
        count += 200
    return count / elapsed


def main() -> None:
    core = DnsCore(PeerName(1), "mesh.local.")
    for i in range(NAMES):
        core.add(RecordKey(f"svc{i}.mesh.local.", 0x0A200000 + i, f"c{i}"), 0.0)
    for j in range(3):
        core.add(RecordKey("svc7.mesh.local.", 0x0A300000 + j, f"x{j}"), 0.0)
    view = core.view()
    resolver = Resolver("mesh.local", reverse_networks=("10.32.0.0/12",))
    rng = random.Random(1)
    queries = [DNSRecord.question(f"svc{i}.mesh.local", "A").pack() for i in range(NAMES)]
    edns = DNSRecord.question("svc7.mesh.local", "A")
    edns.add_ar(EDNS0(udp_len=1232))
    four = edns.pack()
    nx = DNSRecord.question("nope.mesh.local", "A").pack()
    ptr = DNSRecord.question("5.0.32.10.in-addr.arpa", "PTR").pack()
    outside = DNSRecord.question("example.com", "A").pack()
    index = [0]

    def rotating(fast: bool) -> Callable[[], object]:
        def one() -> object:
            index[0] = (index[0] + 1) % NAMES
            return resolver.resolve(queries[index[0]], view, rng, fast=fast)
        return one

    cases = {
        "A, 1 address, 1,000 names (memoized)": rotating(True),
        "A, 4 addresses + EDNS0 (shuffled, bytes)": lambda: resolver.resolve(four, view, rng),
        "NXDOMAIN with SOA (memoized)": lambda: resolver.resolve(nx, view, rng),
        "PTR (memoized)": lambda: resolver.resolve(ptr, view, rng),
        "outside name: forward decision (memoized)": lambda: resolver.resolve(outside, view, rng),
        "A, 1 address (dnslib path, first query)": rotating(False),
        "A, 4 addresses (dnslib path)": lambda: resolver.resolve(four, view, rng, fast=False),
        "NXDOMAIN with SOA (dnslib path)": lambda: resolver.resolve(nx, view, rng, fast=False),
    }
    print(f"resolver core, {NAMES} names (answers per second, one core):")
    for label, fn in cases.items():
        print(f"  {label:44s} {rate(fn):>10,.0f}/s")
    start = time.perf_counter()
    for i in range(20):
        core.set_reachable(frozenset({PeerName(1), PeerName(100 + i)}))
        core.view()
    print(f"  view rebuild after a change ({NAMES} names)      "
          f"{(time.perf_counter() - start) / 20 * 1000:8.2f} ms")


if __name__ == "__main__":
    main()

"""IPAM under pressure (issue 12): real routers on 127.0.0.1 share a small range
(``--ipalloc-init consensus=N``) and one of them gets a burst of allocations
through the HTTP API, ``CONCURRENCY`` at a time, as many as the range has usable
addresses.  Prints, per range size and router count, how many succeed (out of
the usable addresses), the burst's wall time, and how long the next request
takes to be refused and why.

    python bench/ipam_pressure.py [ROUTERS...]          # default 3 4
    MR_PRESSURE_WAIT=10 MR_PRESSURE_CONCURRENCY=10 python bench/ipam_pressure.py 4

Routers are started with ``tests/procs.py`` (each killed by PID at the end).
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.procs import RouterFleet, RouterProcess, wait_until

RANGES = ["198.18.96.0/24", "198.18.97.0/26", "198.18.98.0/28"]
WAIT = float(os.environ.get("MR_PRESSURE_WAIT", "10"))
CONCURRENCY = int(os.environ.get("MR_PRESSURE_CONCURRENCY", "10"))


def _mesh(routers: list[RouterProcess]) -> bool:
    for router in routers:
        status = router.get("/status")
        if status["peers"] != len(routers) or status["connections"] != len(routers) - 1:
            return False
    return True


def _allocate(client: httpx.Client, router: RouterProcess, container: str,
              wait: float) -> tuple[str | None, str]:
    response = client.post(f"http://{router.api}/ip/{container}?wait={wait:g}",
                           headers={"Content-Type": "application/json"}, timeout=wait + 30)
    try:
        body = response.json()
    except ValueError:
        return None, f"HTTP {response.status_code}: {response.text[:200]!r}"
    if response.status_code == 200:
        return str(body.get("address", body)), ""
    return None, f"HTTP {response.status_code}: {body.get('error', body)}"


def _launch(fleet: RouterFleet, nickname: str, peers: list[str],
            extra: list[str]) -> RouterProcess:
    """Launch, retrying twice: on a loaded machine a start can take over 20 s."""
    for attempt in range(3):
        try:
            return fleet.launch(nickname, peers, extra=extra)
        except AssertionError:
            fleet.routers[-1].kill()  # the slow one, by its PID
            if attempt == 2:
                raise
    raise AssertionError("unreachable")


def run(count: int, cidr: str) -> dict[str, object]:
    prefix = int(cidr.split("/")[1])
    usable = (1 << (32 - prefix)) - 2
    with tempfile.TemporaryDirectory(prefix="mr-pressure-") as tmp:
        fleet = RouterFleet(Path(tmp))
        try:
            extra = ["--ipalloc-range", cidr, "--ipalloc-init", f"consensus={count}"]
            first = _launch(fleet, "p0", [], extra)
            routers = [first] + [_launch(fleet, f"p{i}", [first.listen], extra)
                                 for i in range(1, count)]
            wait_until(lambda: _mesh(routers), 60, "full mesh", *routers)
            with httpx.Client() as client:
                # Found the ring first (lazy consensus), so the burst measures
                # allocation, not the vote.
                _allocate(client, first, "founding", 30)
                wait_until(lambda: all(r.get("/status/ipam")["state"] == "ready"
                                       for r in routers), 30, "ring everywhere", *routers)
                started = time.monotonic()
                with ThreadPoolExecutor(CONCURRENCY) as pool:
                    results = list(pool.map(
                        lambda i: _allocate(client, first, f"burst-{i}", WAIT),
                        range(usable - 1)))
                burst = time.monotonic() - started
                addresses = [a for a, _ in results if a is not None]
                errors = [e for a, e in results if a is None]
                started = time.monotonic()
                extra_address, reason = _allocate(client, first, "one-more", WAIT)
                refused_after = time.monotonic() - started
                free = {row["peer"]: row["free"]
                        for row in first.get("/status/ipam")["peers"]}
        finally:
            fleet.stop_all()
    return {
        "routers": count, "range": cidr, "usable": usable,
        "succeeded": len(addresses) + 1,  # + the founding allocation
        "distinct": len(set(addresses)) == len(addresses),
        "burst_s": burst, "first_error": errors[0] if errors else "",
        "next": extra_address or f"refused after {refused_after:.2f}s: {reason}",
        "free_left": free,
    }


def main() -> None:
    counts = [int(a) for a in sys.argv[1:]] or [3, 4]
    print(f"burst of (usable - 1) allocations at one router, {CONCURRENCY} at a time, "
          f"wait={WAIT:g}s each (plus the founding allocation)")
    for count in counts:
        for cidr in RANGES:
            r = run(count, cidr)
            print(f"{r['routers']} routers {r['range']:>16}: {r['succeeded']:>3}/{r['usable']} "
                  f"succeeded (distinct: {r['distinct']}), burst {r['burst_s']:.1f}s wall; "
                  f"next: {r['next']}", flush=True)
            if r["first_error"]:
                print(f"    first failure: {r['first_error']}")
            print(f"    free per peer afterwards: {r['free_left']}", flush=True)


if __name__ == "__main__":
    main()

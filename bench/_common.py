"""Shared helpers for the simulator benchmarks (not a test module)."""

from __future__ import annotations

import logging
import math

import trio

from sim.runner import Simulation


def quiet() -> None:
    logging.basicConfig(level=logging.CRITICAL)


async def wait_converged(sim: Simulation, *, settle: float = 3.0, limit: float = 1800.0) -> float:
    """Sim seconds until every live peer agrees (held for ``settle``)."""
    start = trio.current_time()
    since: float | None = None
    while trio.current_time() - start < limit:
        now = trio.current_time()
        if sim.cluster.converged():
            since = now if since is None else since
            if now - since >= settle:
                return since - start
        else:
            since = None
        await trio.sleep(0.05)
    raise RuntimeError(f"no convergence within {limit}s (seed {sim.options.seed})")


def fit_exponent(xs: list[float], ys: list[float]) -> float:
    """Least-squares slope of log(y) against log(x)."""
    lx = [math.log(x) for x in xs]
    ly = [math.log(y) for y in ys]
    mx, my = sum(lx) / len(lx), sum(ly) / len(ly)
    num = sum((a - mx) * (b - my) for a, b in zip(lx, ly, strict=True))
    den = sum((a - mx) ** 2 for a in lx)
    return num / den

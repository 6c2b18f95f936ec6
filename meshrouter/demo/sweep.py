"""Leftovers of earlier demo runs: found by the demo's own name prefix and the
pidfiles under its own state directory, and removed.

A run directory ``<state>/<id>/`` whose owner (``demo.pid``) is no longer a live
``meshrouter demo`` process was killed (kill -9, a crash, a machine without
``finally``) or kept with ``--keep``: its routers, OVS daemons, namespaces
``mrdemo-<id>-*`` and ``/etc/netns`` entries are removed.  A run whose owner
still runs is left alone, so two demos with one state directory do not fight.
Namespaces of the prefix without a run directory here belong to a demo with
another state directory: they are reported, never removed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from meshrouter.demo import procs
from meshrouter.demo.lab import NAME_PREFIX, OWNER_FILE
from meshrouter.demo.netlab import netns_list, remove_run


@dataclass
class SweepResult:
    removed: list[str] = field(default_factory=list)
    """Run IDs whose leftovers were removed."""
    running: list[str] = field(default_factory=list)
    """Run IDs of demos that still run (left alone)."""
    foreign: list[str] = field(default_factory=list)
    """Demo namespaces with no run directory in this state directory."""
    left: list[str] = field(default_factory=list)
    """What could not be removed."""


def owner_alive(run_dir: Path) -> bool:
    pid = procs.read_pid(run_dir / OWNER_FILE)
    if pid is None or not procs.alive(pid):
        return False
    line = procs.cmdline(pid)
    return "meshrouter" in line and "demo" in line


def sweep(state_dir: Path, *, skip: str | None = None) -> SweepResult:
    """Remove the leftovers of dead runs under ``state_dir`` (not run ``skip``)."""
    result = SweepResult()
    runs = sorted(p for p in state_dir.iterdir() if p.is_dir()) if state_dir.is_dir() else []
    for run_dir in runs:
        if run_dir.name == skip:
            continue
        if owner_alive(run_dir):
            result.running.append(run_dir.name)
            continue
        result.left += remove_run(run_dir, f"{NAME_PREFIX}{run_dir.name}-")
        result.removed.append(run_dir.name)
    known = {p.name for p in runs}
    result.foreign = sorted(ns for ns in netns_list() if ns.startswith(NAME_PREFIX)
                            and ns[len(NAME_PREFIX):].split("-", 1)[0] not in known)
    return result

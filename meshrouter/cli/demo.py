"""``meshrouter demo``: the whole product on one machine, in one command (root).

Builds 3 test hosts as network namespaces with a router and its own OVS each,
attaches containers, and shows what the mesh does (see
``meshrouter/demo/scenario.py``); then removes everything, also on Ctrl-C,
SIGTERM or failure.  ``--keep`` leaves the lab up and prints how to look around
and how to tear it down (``meshrouter demo --clean``).  Exit status 0 only when
every check passed.

Nothing heavy is imported at module level (the CLI's client-verb rule): rich and
the lab are imported when the command runs.
"""

from __future__ import annotations

import signal
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any

import click

if TYPE_CHECKING:
    from rich.console import Console

    from meshrouter.demo.scenario import Check

DEFAULT_STATE_DIR = "/run/meshrouter-demo"


class RichReporter:
    """Progress for a person: a spinner per step, then ✓ or ✗ with its duration."""

    def __init__(self, console: Console) -> None:
        self.console = console

    @contextmanager
    def step(self, title: str) -> Iterator[None]:
        started = time.monotonic()
        try:
            with self.console.status(f"{title} ...", spinner="dots"):
                yield
        except BaseException:
            self.console.print(f"[red]✗[/red] {title} "
                               f"[dim]({time.monotonic() - started:.1f} s)[/dim]")
            raise
        self.console.print(f"[green]✓[/green] {title} "
                           f"[dim]({time.monotonic() - started:.1f} s)[/dim]")

    def show(self, title: str, text: str) -> None:
        from rich.text import Text

        self.console.rule(f"[bold]{title}[/bold]", align="left")
        self.console.print(Text(text.rstrip()))

    def check(self, check: Check) -> None:
        mark = "[green]PASS[/green]" if check.ok else "[red]FAIL[/red]"
        self.console.print(f"{mark} {check.title}: [dim]{check.detail}[/dim]")


INTRO = (
    "3 hosts (network namespaces on a private underlay bridge), each running a meshrouter\n"
    "router that starts its own Open vSwitch (userspace datapath), 2 containers per host.\n"
    "Nothing outside the demo's own namespaces is touched; Ctrl-C removes everything."
)


class Terminated(KeyboardInterrupt):
    """SIGTERM, handled like Ctrl-C (the lab is removed), exit status 143."""


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise Terminated(signal.Signals(signum).name)


@click.command()
@click.option("--keep", is_flag=True, help="Leave the lab running to explore; prints how "
              "to look around and how to remove it.")
@click.option("--clean", is_flag=True, help="Only remove what earlier demos left, then exit.")
@click.option("--state-dir", type=click.Path(path_type=Path), default=DEFAULT_STATE_DIR,
              show_default=True, envvar="MESHROUTER_DEMO_DIR",
              help="Where runs keep routers' data, pidfiles and logs (short: OVS sockets).")
def demo(keep: bool, clean: bool, state_dir: Path) -> None:
    """Build a 3-host mesh in network namespaces and show what it does (root)."""
    from rich.console import Console

    from meshrouter.demo.preflight import missing_requirements

    console = Console(highlight=False)
    problems = missing_requirements()
    if problems:
        for problem in problems:
            console.print(f"[red]meshrouter demo: {problem}[/red]")
        raise SystemExit(1)
    state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    signal.signal(signal.SIGTERM, _interrupt)
    # Ctrl-C must remove the lab even when started from a script's background job,
    # which starts with SIGINT ignored (and then Python installs no handler for it)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    _sweep(console, state_dir)
    if clean:
        return
    raise SystemExit(_run(console, state_dir, keep))


def _sweep(console: Console, state_dir: Path) -> None:
    from meshrouter.demo.sweep import sweep

    result = sweep(state_dir)
    if result.removed:
        console.print(f"removed what earlier demo runs left: {', '.join(result.removed)}")
    for left in result.left:
        console.print(f"[yellow]could not remove {left}[/yellow]")
    if result.running:
        console.print(f"[yellow]another demo is running ({', '.join(result.running)}); "
                      "its lab is left alone[/yellow]")
    if result.foreign:
        console.print(f"[yellow]demo namespaces of another state directory (not removed): "
                      f"{', '.join(result.foreign)}[/yellow]")


def _run(console: Console, state_dir: Path, keep: bool) -> int:
    from meshrouter.demo.lab import Lab
    from meshrouter.demo.scenario import build, show
    from meshrouter.errors import DemoError

    report = RichReporter(console)
    lab = Lab(state_dir)
    lab.columns = max(80, console.width)
    console.print(f"[bold]meshrouter demo[/bold] run {lab.run_id}: namespaces {lab.prefix}*, "
                  f"state in {lab.base}")
    console.print(INTRO)
    checks: list[Any] = []
    status = 1
    try:
        build(lab, report)
        checks = show(lab, report, state_dir)
        status = 0 if checks and all(c.ok for c in checks) else 1
    except DemoError as exc:
        console.print(f"[red]meshrouter demo: {exc}[/red]")
    except KeyboardInterrupt as exc:
        console.print(f"[yellow]interrupted ({exc or 'SIGINT'}): removing the lab[/yellow]")
        keep, status = False, 143 if isinstance(exc, Terminated) else 130
    finally:
        if keep:
            _explain_kept(console, lab)
        else:
            _close(console, lab)
    passed = sum(1 for c in checks if c.ok)
    if checks:
        colour = "green" if status == 0 else "red"
        console.print(f"[{colour}]{passed} of {len(checks)} checks passed[/{colour}]")
    return status


def _close(console: Console, lab: Any) -> None:
    """Remove the lab; a second Ctrl-C must not cut the cleanup short."""
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    try:
        with console.status("removing the lab (routers stop their OVS daemons) ..."):
            left = lab.close()
    finally:
        signal.signal(signal.SIGINT, previous)
    if left:
        console.print(f"[red]could not remove: {', '.join(left)}[/red]")
    else:
        console.print("[green]✓[/green] lab removed: no namespace, link or process left")


def _explain_kept(console: Console, lab: Any) -> None:
    h1 = lab.hosts[0].ns if lab.hosts else f"{lab.prefix}h1"
    first = lab.hosts[0].containers[0].ns if lab.hosts and lab.hosts[0].containers else ""
    lines = [
        "The lab is still running. Look around (as root):",
        f"  ip netns list | grep {lab.prefix}",
        f"  ip netns exec {h1} meshrouter status peers      # any router: h1, h2, h3",
        f"  ip netns exec {h1} meshrouter ps",
    ]
    if first:
        lines.append(f"  ip netns exec {first} ping -c 3 db-3             # by name")
    if lab.forward_port:
        lines.append(f"  status page http://127.0.0.1:{lab.forward_port}/  "
                     f"picture http://127.0.0.1:{lab.forward_port}/graph.svg  (h1's API)")
    lines += [
        f"  router logs and OVS under {lab.base}",
        "Remove it:",
        "  meshrouter demo --clean" + (f" --state-dir {lab.base.parent}"
                                       if str(lab.base.parent) != DEFAULT_STATE_DIR else ""),
    ]
    console.print("\n".join(lines))

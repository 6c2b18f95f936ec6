"""``python -m sim`` / ``meshrouter sim``: run a scenario, show progress, summarise."""

from __future__ import annotations

import importlib.util
import json
import logging
import sys
import time
from pathlib import Path

import click
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from meshrouter.errors import ConfigError
from meshrouter.ipam.address_range import AddressRange
from sim.collector import COLLECTORS
from sim.runner import SCENARIOS, SimOptions, SimResult, current_rss_kib, run_simulation


def _print_summary(console: Console, result: SimResult) -> None:
    opts = result.options
    console.print(
        f"[bold]{opts.scenario}[/bold]: {opts.peers} peers, seed {opts.seed}, "
        f"latency {opts.latency * 1000:g} ms, loss {opts.loss:g}, conn limit {opts.conn_limit}"
    )
    phases = Table(title="phases")
    for column in ("phase", "start (sim s)", "converged after (sim s)", "messages", "bytes"):
        phases.add_column(column, justify="right")
    for phase in result.phases:
        took = phase.convergence_time
        phases.add_row(
            phase.name,
            f"{phase.started:.2f}",
            f"{took:.3f}" if took is not None else "[red]did not converge[/red]",
            f"{phase.messages:,}",
            f"{phase.bytes:,}",
        )
    console.print(phases)
    channels = Table(title="gossip per channel (sent)")
    for column in ("channel", "messages", "bytes", "messages/peer", "bytes/peer"):
        channels.add_column(column, justify="right")
    for name, counts in sorted(result.channels.items()):
        channels.add_row(
            name,
            f"{counts['messages']:,}",
            f"{counts['bytes']:,}",
            f"{counts['messages'] / opts.peers:,.1f}",
            f"{counts['bytes'] / opts.peers:,.0f}",
        )
    console.print(channels)
    facts = Table.grid(padding=(0, 2))
    facts.add_column(justify="right", style="bold")
    facts.add_column()
    facts.add_row("simulated time", f"{result.simulated_seconds:.2f} s")
    facts.add_row("wall time", f"{result.wall_seconds:.2f} s")
    facts.add_row(
        "routes computed", f"{result.routes_computed:,} (shared hits {result.routes_shared:,})"
    )
    facts.add_row("peak RSS", f"{result.peak_rss_mib:.1f} MiB")
    facts.add_row("RSS per peer", f"{result.rss_per_peer_kib:.0f} KiB")
    facts.add_row("events", f"{result.events:,}, digest {result.event_digest[:16]}")
    invariants = (
        "all hold" if not result.violations else f"[red]{len(result.violations)} violated[/red]"
    )
    if result.ipam is not None:
        ipam = result.ipam
        p50, p99 = ipam["latency_p50_s"], ipam["latency_p99_s"]
        facts.add_row(
            "IPAM",
            f"{ipam['allocations_met']} allocations met, {ipam['allocations_unmet']} timed out; "
            f"latency p50 {p50 if p50 is None else f'{p50 * 1000:.0f} ms'}, "
            f"p99 {p99 if p99 is None else f'{p99 * 1000:.0f} ms'}; "
            f"{ipam['reclaims']} reclaims, {ipam['donations']} donations; "
            f"duplicates seen {ipam['duplicates_seen']}",
        )
    facts.add_row("invariants", invariants)
    console.print(facts)
    for violation in result.violations:
        console.print(f"[red]{violation}[/red]")


def _check_range(value: str) -> str:
    """``--ipalloc-range``: refused here, in one line, if the routers would refuse it."""
    try:
        return str(AddressRange.parse(value))
    except ConfigError as exc:
        raise click.BadParameter(str(exc)) from None


@click.command("sim")
@click.option("--peers", type=click.IntRange(min=1, max=4000), default=20, show_default=True)
@click.option("--seed", type=int, default=1, show_default=True)
@click.option("--scenario", type=click.Choice(sorted(SCENARIOS)), default="join", show_default=True)
@click.option(
    "--latency",
    type=click.FloatRange(min=0),
    default=0.01,
    show_default=True,
    help="One-way link latency in seconds.",
)
@click.option("--jitter", type=click.FloatRange(min=0), default=0.0, show_default=True)
@click.option(
    "--loss",
    type=click.FloatRange(0, 0.99),
    default=0.0,
    show_default=True,
    help="Probability a chunk needs a TCP retransmission.",
)
@click.option(
    "--conn-limit",
    type=click.IntRange(min=1),
    default=None,
    help="Connections per router (default 200; 8 for --scenario conn-limit).",
)
@click.option(
    "--duration",
    type=click.FloatRange(min=0),
    default=60.0,
    show_default=True,
    help="Simulated seconds of churn (churn scenario).",
)
@click.option("--join-interval", type=click.FloatRange(min=0), default=0.1, show_default=True)
@click.option(
    "--heartbeat-timeout", type=click.FloatRange(min=0.1), default=60.0, show_default=True
)
@click.option(
    "--log-level",
    type=click.Choice(["debug", "info", "warning", "error"]),
    default="error",
    show_default=True,
    help="Log level of the simulated routers.",
)
@click.option(
    "--reclaim-after", type=click.FloatRange(min=0.1), default=60.0, show_default=True,
    help="IPAM: seconds before an unreachable peer's free space is reclaimed.",
)
@click.option(
    "--ipalloc-range", metavar="CIDR", default=SimOptions.ipalloc_range, show_default=True,
    callback=lambda _ctx, _param, value: _check_range(value),
    help="IPAM: the simulated routers' allocation range (e.g. a /26 to press it).",
)
@click.option(
    "--allocations", type=click.IntRange(min=0), default=0,
    help="IPAM scenarios: allocations per phase (default 2 per peer).",
)
@click.option("--no-ipam", is_flag=True, help="Run the routers without IPAM.")
@click.option(
    "--gc", "collector_name", type=click.Choice(sorted(COLLECTORS)), default="relaxed",
    show_default=True,
    help="Garbage collector settings of the simulator process (python: the interpreter's).",
)
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@click.option(
    "--progress-every", type=click.FloatRange(min=0), default=0.0, metavar="SECONDS",
    help="Also print a progress line (phase, simulated time, agreement, wall time, RSS) to "
    "stderr every SECONDS of wall time: for long runs without a terminal.",
)
@click.option("--plot", type=click.Path(path_type=Path), help="Write a convergence plot (PNG).")
def main(
    peers: int,
    seed: int,
    scenario: str,
    latency: float,
    jitter: float,
    loss: float,
    conn_limit: int | None,
    duration: float,
    join_interval: float,
    heartbeat_timeout: float,
    log_level: str,
    reclaim_after: float,
    ipalloc_range: str,
    allocations: int,
    no_ipam: bool,
    collector_name: str,
    as_json: bool,
    progress_every: float,
    plot: Path | None,
) -> None:
    """Run N real routers in one process on a simulated clock and network."""
    if plot is not None and importlib.util.find_spec("matplotlib") is None:
        raise click.ClickException("--plot needs matplotlib: pip install 'meshrouter[sim]'")
    logging.basicConfig(
        level=getattr(logging, log_level.upper()), format="%(levelname)-7s %(name)s: %(message)s"
    )
    if conn_limit is None:
        conn_limit = 8 if scenario == "conn-limit" else 200
    options = SimOptions(
        peers=peers,
        seed=seed,
        scenario=scenario,
        latency=latency,
        jitter=jitter,
        loss=loss,
        conn_limit=conn_limit,
        duration=duration,
        join_interval=join_interval,
        heartbeat_timeout=heartbeat_timeout,
        heartbeat_interval=min(30.0, heartbeat_timeout / 2),
        reclaim_after=reclaim_after,
        ipalloc_range=ipalloc_range,
        allocations=allocations,
        ipam=not no_ipam,
        gc=collector_name,
    )
    console = Console(stderr=True)
    with Progress(
        TextColumn("[bold]{task.fields[phase]}"),
        BarColumn(),
        TextColumn("{task.percentage:>5.1f}% agree"),
        TextColumn("sim {task.fields[simtime]:.1f}s"),
        TimeElapsedColumn(),
        console=console,
        transient=True,
        disable=not console.is_terminal,
    ) as progress:
        task = progress.add_task("sim", total=1.0, phase="start", simtime=0.0)
        started = time.perf_counter()
        last = [started]

        def report(phase: str, now: float, fraction: float) -> None:
            progress.update(task, completed=fraction, phase=phase, simtime=now)
            wall = time.perf_counter()
            if progress_every and wall - last[0] >= progress_every:
                last[0] = wall
                click.echo(f"progress: {phase} sim {now:.1f} s, {fraction * 100:.1f}% agree, "
                           f"wall {wall - started:.0f} s, RSS {current_rss_kib() / 1024:.0f} MiB",
                           err=True)

        result = run_simulation(options, progress=report)
    if as_json:
        click.echo(json.dumps(result.to_json(), indent=2))
    else:
        _print_summary(Console(), result)
    if plot is not None:
        from sim.plot import plot_convergence

        plot_convergence(result, plot)
        click.echo(f"plot written to {plot}", err=True)
    if result.violations or not result.converged:
        sys.exit(1)

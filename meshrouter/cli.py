"""Command line: ``meshrouter launch peer`` runs a router; the other verbs are
clients of a running router's HTTP API.  This is the only place that configures
logging or calls ``trio.run``.
"""

from __future__ import annotations

import json
import logging
import os
import random
import secrets
import signal
import socket
import sys
from pathlib import Path
from typing import Any, NoReturn

import click
import trio
from rich.console import Console
from rich.table import Table

from meshrouter import __version__
from meshrouter.config import (
    DEFAULT_API_PORT,
    DEFAULT_PORT,
    RouterConfig,
    format_host_port,
    normalise_peer_address,
    parse_host_port,
)
from meshrouter.dialing.backoff import BackoffPolicy
from meshrouter.errors import ApiError, ConfigError, MeshError
from meshrouter.names import PeerName, format_peer_name, parse_peer_name, peer_name_from_seed
from meshrouter.storage import FileStorage, Storage

log = logging.getLogger("meshrouter")

PEER_NAME_KEY = "peer-name"
DEFAULT_API = f"127.0.0.1:{DEFAULT_API_PORT}"


def _fail(message: str) -> NoReturn:
    click.echo(f"meshrouter: error: {message}", err=True)
    sys.exit(1)


def default_data_dir() -> Path:
    if os.geteuid() == 0:
        return Path("/var/lib/meshrouter")
    return Path.home() / ".local" / "state" / "meshrouter"


def _machine_seed() -> bytes:
    for path in ("/etc/machine-id", "/var/lib/dbus/machine-id", "/sys/class/dmi/id/product_uuid"):
        try:
            text = Path(path).read_text().strip()
        except OSError:
            continue
        if text:
            return text.encode()
    return socket.gethostname().encode()


def resolve_peer_name(given: str | None, storage: Storage, data_dir: Path) -> PeerName:
    """--name wins; else the name stored in the data dir; else derive and store one.

    The derived name hashes the machine ID with the data directory's path, so it
    is stable across restarts and distinct for several routers on one host.
    """
    if given is not None:
        name = parse_peer_name(given)
        storage.save(PEER_NAME_KEY, format_peer_name(name).encode())
        return name
    stored = storage.load(PEER_NAME_KEY)
    if stored is not None:
        try:
            return parse_peer_name(stored.decode("ascii", "strict"))
        except (UnicodeDecodeError, ConfigError) as exc:
            raise ConfigError(
                f"stored peer name in {data_dir / PEER_NAME_KEY} is corrupt ({exc}); "
                "pass --name or remove the file"
            ) from None
    name = peer_name_from_seed(_machine_seed() + b"|" + str(data_dir.resolve()).encode())
    storage.save(PEER_NAME_KEY, format_peer_name(name).encode())
    return name


def read_password(password_file: Path | None) -> bytes | None:
    if password_file is not None:
        try:
            raw = password_file.read_bytes()
        except OSError as exc:
            raise ConfigError(
                f"cannot read --password-file {password_file}: {exc.strerror}"
            ) from None
        password = raw.rstrip(b"\r\n")
        if not password:
            raise ConfigError(f"--password-file {password_file} is empty")
        return password
    env = os.environ.get("MESHROUTER_PASSWORD")
    if env is not None:
        if not env:
            raise ConfigError("MESHROUTER_PASSWORD is set but empty")
        return env.encode()
    return None


def host_routes() -> list[str]:
    """Destinations of the host's IPv4 routes (main table, and local networks)."""
    from pyroute2 import IPRoute

    found: list[str] = []
    with IPRoute() as ipr:
        for table in (254, 255):
            for route in ipr.get_routes(family=socket.AF_INET, table=table):
                dst, length = route.get_attr("RTA_DST"), route["dst_len"]
                if dst and 0 < length < 32:
                    found.append(f"{dst}/{length}")
    return found


def check_ipalloc_range(text: str, init: str | None, initial_peers: int) -> None:
    """Refuse a range that is not a CIDR or that overlaps a route of this host."""
    from meshrouter.ipam.address_range import AddressRange, overlapping_route
    from meshrouter.ipam.founding import parse_founding

    address_range = AddressRange.parse(text)
    parse_founding(init, initial_peers)
    try:
        routes = host_routes()
    except OSError as exc:
        log.warning("cannot read the host's routes to check --ipalloc-range: %s", exc)
        return
    clash = overlapping_route(address_range.network, routes)
    if clash is not None:
        raise ConfigError(
            f"--ipalloc-range {address_range} overlaps the host's route to {clash}; "
            "containers would shadow (or be shadowed by) that network. Choose another range "
            "with --ipalloc-range"
        )


def _leaf_exception(exc: BaseException) -> BaseException:
    """The single error inside (nested) exception groups, as trio nurseries wrap it."""
    while isinstance(exc, BaseExceptionGroup) and len(exc.exceptions) == 1:
        exc = exc.exceptions[0]
    return exc


def configure_logging(level: str) -> None:
    logging.basicConfig(
        level=getattr(logging, level.upper()),
        format="%(asctime)s %(levelname)-7s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    if level.upper() != "DEBUG":
        logging.getLogger("meshrouter.api.http").setLevel(logging.WARNING)


# ---------------------------------------------------------------------------- CLI


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--api",
    "api",
    envvar="MESHROUTER_API",
    default=DEFAULT_API,
    show_default=True,
    help="HOST:PORT of the router's API (client verbs; env MESHROUTER_API).",
)
@click.version_option(__version__, prog_name="meshrouter")
@click.pass_context
def main(ctx: click.Context, api: str) -> None:
    """meshrouter: a Weave-style overlay network for containers."""
    ctx.obj = api


@main.group()
def launch() -> None:
    """Run meshrouter services in the foreground."""


def _positive(ctx: click.Context, param: click.Parameter, value: float) -> float:
    if value <= 0:
        raise click.BadParameter("must be greater than 0")
    return value


@launch.command("peer")
@click.argument("peers", nargs=-1)
@click.option("--name", help="Peer name as 6 hex octets (default: derived, stable via --data-dir).")
@click.option("--nickname", default=socket.gethostname(), show_default=True)
@click.option(
    "--listen", default=f"0.0.0.0:{DEFAULT_PORT}", show_default=True, help="HOST:PORT for peers."
)
@click.option(
    "--api", "api_listen", default=DEFAULT_API, show_default=True, help="HOST:PORT of the HTTP API."
)
@click.option(
    "--password-file", type=click.Path(path_type=Path), help="File holding the mesh password."
)
@click.option("--data-dir", type=click.Path(path_type=Path), help="State directory.")
@click.option("--conn-limit", type=click.IntRange(min=1), default=200, show_default=True)
@click.option("--datapath", type=click.Choice(["none"]), default="none", show_default=True)
@click.option("--no-discovery", is_flag=True, help="Do not dial peers learned from the topology.")
@click.option(
    "--heartbeat-interval", type=float, default=30.0, show_default=True, callback=_positive
)
@click.option(
    "--heartbeat-timeout",
    type=float,
    default=60.0,
    show_default=True,
    callback=_positive,
    help="Seconds of silence after which a connection is dead.",
)
@click.option("--gossip-interval", type=float, default=30.0, show_default=True, callback=_positive)
@click.option(
    "--ipalloc-range", default="10.32.0.0/12", show_default=True,
    help="CIDR from which container addresses are allocated.",
)
@click.option(
    "--ipalloc-init", default=None,
    help="consensus[=N] (default: N = 1 + initial peers), seed=NAME[,NAME...] or observer.",
)
@click.option(
    "--ipalloc-reclaim-after", type=float, default=600.0, show_default=True, callback=_positive,
    help="Seconds a peer must be unreachable before its free space is reclaimed.",
)
@click.option("--no-ipam", is_flag=True, help="Run without IP address management.")
@click.option(
    "--log-level",
    type=click.Choice(["debug", "info", "warning", "error"]),
    default="info",
    show_default=True,
)
def launch_peer(
    peers: tuple[str, ...],
    name: str | None,
    nickname: str,
    listen: str,
    api_listen: str,
    password_file: Path | None,
    data_dir: Path | None,
    conn_limit: int,
    datapath: str,
    no_discovery: bool,
    heartbeat_interval: float,
    heartbeat_timeout: float,
    gossip_interval: float,
    ipalloc_range: str,
    ipalloc_init: str | None,
    ipalloc_reclaim_after: float,
    no_ipam: bool,
    log_level: str,
) -> None:
    """Run a peer router in the foreground; PEER is HOST[:PORT] of another router."""
    configure_logging(log_level)
    try:
        listen_host, listen_port = parse_host_port(
            listen, DEFAULT_PORT, what="--listen", allow_zero=True
        )
        api_host, api_port = parse_host_port(
            api_listen, DEFAULT_API_PORT, what="--api", allow_zero=True
        )
        initial = tuple(normalise_peer_address(p) for p in peers)
        directory = data_dir or default_data_dir()
        storage = FileStorage(directory)
        config = RouterConfig(
            name=resolve_peer_name(name, storage, directory),
            nickname=nickname,
            listen_host=listen_host,
            listen_port=listen_port,
            password=read_password(password_file),
            conn_limit=conn_limit,
            initial_peers=initial,
            discovery=not no_discovery,
            heartbeat_interval=heartbeat_interval,
            heartbeat_timeout=heartbeat_timeout,
            gossip_interval=gossip_interval,
            backoff=BackoffPolicy(),
            ipam=not no_ipam,
            ipalloc_range=ipalloc_range,
            ipalloc_init=ipalloc_init,
            ipalloc_reclaim_after=ipalloc_reclaim_after,
        )
        if not no_ipam:
            check_ipalloc_range(ipalloc_range, ipalloc_init, len(initial))
    except MeshError as exc:
        _fail(str(exc))
    try:
        trio.run(_run_peer, config, storage, api_host, api_port)
    except BaseException as exc:
        leaf = _leaf_exception(exc)
        if isinstance(leaf, MeshError):
            _fail(str(leaf))
        if isinstance(leaf, OSError):
            _fail(f"cannot listen: {leaf.strerror or leaf}")
        raise


async def _run_peer(config: RouterConfig, storage: Storage, api_host: str, api_port: int) -> None:
    # Imported here so that client verbs start fast.
    from meshrouter.api.server import ApiServer
    from meshrouter.node.router import Router
    from meshrouter.node.transport import TcpTransport

    router = Router(
        config,
        transport=TcpTransport(config.listen_host, config.listen_port),
        rng=random.Random(secrets.randbits(128)),
        storage=storage,
    )
    async with trio.open_nursery() as nursery:

        async def run_router(task_status: trio.TaskStatus[str] = trio.TASK_STATUS_IGNORED) -> None:
            await router.run(task_status=task_status)
            nursery.cancel_scope.cancel()

        async def watch_signals() -> None:
            with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
                async for signum in signals:
                    log.info("received %s, shutting down", signal.Signals(signum).name)
                    router.stop()

        nursery.start_soon(watch_signals)
        listen = await nursery.start(run_router)
        api = await nursery.start(ApiServer(router, api_host, api_port).run)
        log.info(
            "meshrouter %s peer %s ready: mesh on %s, API on %s",
            __version__,
            router.label,
            listen,
            api,
        )


# ---------------------------------------------------------------------------- client verbs


def _client(ctx: click.Context) -> Any:
    from meshrouter.api.client import ApiClient

    try:
        host, port = parse_host_port(ctx.obj, DEFAULT_API_PORT, what="--api")
    except ConfigError as exc:
        _fail(str(exc))
    return ApiClient(format_host_port(host, port))


def _call(ctx: click.Context, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
    client = _client(ctx)
    try:
        return client.get(path) if method == "GET" else client.post(path, body)
    except ApiError as exc:
        _fail(str(exc))


def _check_peers(peers: tuple[str, ...]) -> list[str]:
    try:
        return [normalise_peer_address(p) for p in peers]
    except ConfigError as exc:
        raise click.BadParameter(str(exc)) from None


@main.command()
@click.argument("peers", nargs=-1, required=True)
@click.option("--replace", is_flag=True, help="Forget all other direct peers first.")
@click.pass_context
def connect(ctx: click.Context, peers: tuple[str, ...], replace: bool) -> None:
    """Add direct peers (HOST[:PORT]) to a running router."""
    result = _call(ctx, "POST", "/connect", {"peers": _check_peers(peers), "replace": replace})
    for address in result["connecting"]:
        click.echo(f"connecting to {address}")


@main.command()
@click.argument("peers", nargs=-1, required=True)
@click.pass_context
def forget(ctx: click.Context, peers: tuple[str, ...]) -> None:
    """Stop redialling direct peers (live connections stay until they break)."""
    result = _call(ctx, "POST", "/forget", {"peers": _check_peers(peers)})
    for address in result["unknown"]:
        click.echo(f"not a direct peer: {address}", err=True)


@main.command()
@click.argument(
    "what", required=False, type=click.Choice(["peers", "connections", "targets", "ipam"])
)
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@click.pass_context
def status(ctx: click.Context, what: str | None, as_json: bool) -> None:
    """Show the router's status: summary, peers, connections or targets."""
    path = "/status" if what is None else f"/status/{what}"
    data = _call(ctx, "GET", path)
    if as_json:
        click.echo(json.dumps(data, indent=2, sort_keys=True))
        return
    console = Console(width=160)
    if what is None:
        _print_summary(console, data)
    elif what == "peers":
        _print_peers(console, data)
    elif what == "connections":
        _print_connections(console, data)
    elif what == "ipam":
        _print_ipam(console, data)
    else:
        _print_targets(console, data)


def _print_summary(console: Console, data: dict[str, Any]) -> None:
    states = data.get("connection_states", {})
    state_text = ", ".join(f"{n} {s}" for s, n in sorted(states.items())) or "none"
    table = Table.grid(padding=(0, 2))
    table.add_column(justify="right", style="bold")
    table.add_column()
    rows = [
        ("Version", f"meshrouter {data['version']}"),
        ("Name", f"{data['name']} ({data['nickname']})"),
        ("Listen", str(data["listen"])),
        ("Encryption", "enabled" if data["encryption"] else "disabled"),
        ("Peer discovery", "enabled" if data["discovery"] else "disabled"),
        ("Cluster", data["cluster_id"] or "(none yet)"),
        ("Targets", str(data["targets"])),
        ("Connections", f"{data['connections']} established (all: {state_text})"),
        ("Peers", f"{data['peers']} (with {data['established_links']} established links)"),
        ("Conn limit", str(data["conn_limit"])),
    ]
    for key, value in rows:
        table.add_row(key + ":", value)
    console.print(table)


def _link_text(link: dict[str, Any]) -> str:
    arrow = "->" if link["outbound"] else "<-"
    return f"{arrow}{link['peer']}{'' if link['established'] else ' (pending)'}"


def _print_peers(console: Console, peers: list[dict[str, Any]]) -> None:
    table = Table(title=f"{len(peers)} peers")
    for column in ("name", "nickname", "short id", "version", "connections"):
        table.add_column(column)
    for peer in peers:
        conns = ", ".join(_link_text(c) for c in peer["connections"])
        table.add_row(
            peer["name"], peer["nickname"], str(peer["short_id"]), str(peer["version"]), conns
        )
    console.print(table)


def _print_connections(console: Console, rows: list[dict[str, Any]]) -> None:
    table = Table(title=f"{len(rows)} connections")
    for column in ("dir", "address", "peer", "state", "info"):
        table.add_column(column, overflow="fold")
    for row in rows:
        peer = f"{row['peer']} ({row['nickname']})" if row.get("nickname") else row["peer"]
        table.add_row(
            "->" if row["outbound"] else "<-", row["address"], peer, row["state"], row["info"]
        )
    console.print(table)


def _print_targets(console: Console, rows: list[dict[str, Any]]) -> None:
    table = Table(title=f"{len(rows)} targets")
    for column in ("address", "kind", "state", "peer", "info"):
        table.add_column(column, overflow="fold")
    for row in rows:
        kind = "direct" if row["direct"] else "discovered"
        table.add_row(row["address"], kind, row["state"], row["peer"], row["info"])
    console.print(table)


def _print_ipam(console: Console, data: dict[str, Any]) -> None:
    head = Table.grid(padding=(0, 2))
    head.add_column(justify="right", style="bold")
    head.add_column()
    head.add_row("Range:", data["range"])
    head.add_row("Cluster:", data["cluster_id"] or "(none yet)")
    head.add_row("Founding:", data["mode"])
    head.add_row("State:", data["state"])
    allocated = f"{data['allocated']} addresses, {data['containers']} containers"
    head.add_row("Allocated here:", allocated)
    head.add_row("Unreachable:", f"{data['unreachable_ratio'] * 100:.1f}% of the range")
    console.print(head)
    table = Table(title="ranges per peer")
    for column in ("peer", "reachable", "size", "free", "reserved", "ranges"):
        table.add_column(column, overflow="fold")
    for peer in data["peers"]:
        ranges = ", ".join(peer["ranges"][:4]) + (" ..." if len(peer["ranges"]) > 4 else "")
        table.add_row(
            peer["peer"], "yes" if peer["reachable"] else "NO", str(peer["size"]),
            "?" if peer["free"] is None else str(peer["free"]), str(peer["reserved"]), ranges,
        )
    console.print(table)
    if data["pending"]:
        pending = Table(title="pending requests")
        for column in ("container", "request", "waiting", "why"):
            pending.add_column(column, overflow="fold")
        for row in data["pending"]:
            pending.add_row(row["container"], row["request"], f"{row['waiting_s']:.0f}s",
                            row["reason"])
        console.print(pending)


@main.group()
def ipam() -> None:
    """Allocate, claim, release and look up container addresses."""


def _ipam_call(ctx: click.Context, method: str, path: str, wait: float = 0.0) -> Any:
    client = _client(ctx)
    try:
        return client.request(method, path, timeout=max(client.timeout, wait + 10.0))
    except ApiError as exc:
        _fail(str(exc))


def _quote(text: str) -> str:
    from urllib.parse import quote

    return quote(text, safe="")


@ipam.command("allocate")
@click.argument("container")
@click.option("--subnet", help="Allocate inside this CIDR (part of the range).")
@click.option("--wait", type=click.FloatRange(0, 3600), default=30.0, show_default=True)
@click.pass_context
def ipam_allocate(ctx: click.Context, container: str, subnet: str | None, wait: float) -> None:
    """Give CONTAINER an address (the one it has, if any)."""
    path = f"/ip/{_quote(container)}" + (f"/{subnet}" if subnet else "") + f"?wait={wait:g}"
    click.echo(_ipam_call(ctx, "POST", path, wait)["address"])


@ipam.command("claim")
@click.argument("container")
@click.argument("address")
@click.option("--wait", type=click.FloatRange(0, 3600), default=30.0, show_default=True)
@click.pass_context
def ipam_claim(ctx: click.Context, container: str, address: str, wait: float) -> None:
    """Give CONTAINER this very ADDRESS."""
    path = f"/ip/{_quote(container)}/{_quote(address.split('/')[0])}?wait={wait:g}"
    click.echo(_ipam_call(ctx, "PUT", path, wait)["address"])


@ipam.command("release")
@click.argument("container")
@click.argument("address", required=False)
@click.pass_context
def ipam_release(ctx: click.Context, container: str, address: str | None) -> None:
    """Free CONTAINER's addresses (or just ADDRESS)."""
    path = f"/ip/{_quote(container)}" + (f"/{_quote(address.split('/')[0])}" if address else "")
    for freed in _ipam_call(ctx, "DELETE", path)["released"]:
        click.echo(f"released {freed}")


@ipam.command("lookup")
@click.argument("container")
@click.pass_context
def ipam_lookup(ctx: click.Context, container: str) -> None:
    """Print CONTAINER's addresses."""
    for address in _ipam_call(ctx, "GET", f"/ip/{_quote(container)}")["addresses"]:
        click.echo(address)


@main.command()
@click.argument("name")
@click.pass_context
def rmpeer(ctx: click.Context, name: str) -> None:
    """Take over the address space of peer NAME, which is gone for good."""
    try:
        parse_peer_name(name)
    except ConfigError as exc:
        raise click.BadParameter(str(exc)) from None
    result = _ipam_call(ctx, "DELETE", f"/peer/{_quote(name)}")
    click.echo(f"took over {result['addresses_taken']} addresses of {name}")


@main.command()
@click.pass_context
def reset(ctx: click.Context) -> None:
    """Hand this router's address space to a live peer, then stop the router."""
    result = _ipam_call(ctx, "DELETE", "/peer")
    heir = result["handed_to"]
    click.echo(f"address space handed to {heir}" if heir else "no address space to hand over")
    click.echo("router stopping")


@main.command()
@click.pass_context
def report(ctx: click.Context) -> None:
    """Print the router's full report as JSON."""
    click.echo(json.dumps(_call(ctx, "GET", "/report"), indent=2, sort_keys=True))


@main.command()
@click.pass_context
def stop(ctx: click.Context) -> None:
    """Stop the running router."""
    _call(ctx, "POST", "/stop")
    click.echo("router stopping")


def _load_plugin_commands() -> None:
    """Add commands that installed packages register under ``meshrouter.commands``.

    This is how ``meshrouter sim`` exists without meshrouter importing the
    simulator: the ``sim`` package registers itself in pyproject.toml.
    """
    from importlib.metadata import entry_points

    for entry in entry_points(group="meshrouter.commands"):
        if entry.name in main.commands:
            continue
        try:
            command = entry.load()
        except Exception as exc:  # a broken plugin must not break the CLI
            log.debug("plugin command %s unavailable: %s", entry.name, exc)
            continue
        if isinstance(command, click.Command):
            main.add_command(command, entry.name)


_load_plugin_commands()


if __name__ == "__main__":  # pragma: no cover
    main()

"""``meshrouter launch peer``: run a router and its API in the foreground.

This is the only place that configures logging or calls ``trio.run``.  After
both sockets are bound, the bound addresses go to ``<data-dir>/addresses.json``
(written atomically; removed again on a clean stop) so that a router started
with port 0 can be found without racing for a free port.  The file names the
process (``pid``): one left behind by a ``kill -9`` is recognisably stale.
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
from typing import Any

import click
import trio

from meshrouter import __version__
from meshrouter.cli.api_call import fail
from meshrouter.cli.host_checks import (
    check_ipalloc_range,
    default_data_dir,
    mesh_socket_budget,
    open_data_dir,
    read_password,
    resolve_peer_name,
)
from meshrouter.cli.launch_features import (
    check_options,
    dataplane_settings,
    dns_settings,
    feature_options,
    make_datapath,
    startup_warnings,
)
from meshrouter.config import (
    DEFAULT_API_PORT,
    DEFAULT_PORT,
    IpamSettings,
    MeshSettings,
    RouterConfig,
    TimingSettings,
    normalise_peer_address,
    parse_host_port,
)
from meshrouter.errors import MeshError, StateFileError
from meshrouter.storage import Storage, atomic_write

API_DRAIN = 1.0  # seconds requests in flight get to answer when the router stops

log = logging.getLogger("meshrouter")

ADDRESSES_FILE = "addresses.json"
DEFAULT_API = f"127.0.0.1:{DEFAULT_API_PORT}"


def configure_logging(level: str) -> None:
    logging.basicConfig(
        level=getattr(logging, level.upper()),
        format="%(asctime)s %(levelname)-7s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    if level.upper() != "DEBUG":
        logging.getLogger("meshrouter.api.http").setLevel(logging.WARNING)


def write_addresses(data_dir: Path, listen: str, api: str) -> Path:
    """Publish the bound addresses of this process (tmp file, fsync, rename)."""
    path = data_dir / ADDRESSES_FILE
    record = {"listen": listen, "api": api, "pid": os.getpid()}
    try:
        atomic_write(path, (json.dumps(record, sort_keys=True) + "\n").encode())
    except OSError as exc:
        raise StateFileError(f"cannot write {path}: {exc.strerror or exc}") from None
    return path


def remove_addresses(data_dir: Path) -> None:
    """Remove the addresses file if it is still this process's."""
    path = data_dir / ADDRESSES_FILE
    try:
        if json.loads(path.read_bytes()).get("pid") == os.getpid():
            path.unlink()
    except (OSError, ValueError, AttributeError):
        pass


def _leaf_exception(exc: BaseException) -> BaseException:
    """The single error inside (nested) exception groups, as trio nurseries wrap it."""
    while isinstance(exc, BaseExceptionGroup) and len(exc.exceptions) == 1:
        exc = exc.exceptions[0]
    return exc


def _positive(ctx: click.Context, param: click.Parameter, value: float) -> float:
    if value <= 0:
        raise click.BadParameter("must be greater than 0")
    return value


@click.group()
def launch() -> None:
    """Run meshrouter services in the foreground."""


@launch.command("peer")
@click.argument("peers", nargs=-1)
@click.option("--name", help="Peer name as 6 hex octets (default: derived, stable via --data-dir).")
@click.option("--nickname", default=socket.gethostname(), show_default=True)
@click.option(
    "--listen",
    default=f"0.0.0.0:{DEFAULT_PORT}",
    show_default=True,
    help="HOST:PORT for peers (port 0: any free port, see addresses.json in the data dir).",
)
@click.option(
    "--api",
    "api_listen",
    default=DEFAULT_API,
    show_default=True,
    help="HOST:PORT of the HTTP API (port 0: any free port).",
)
@click.option(
    "--password-file", type=click.Path(path_type=Path), help="File holding the mesh password."
)
@click.option("--data-dir", type=click.Path(path_type=Path), help="State directory.")
@click.option("--conn-limit", type=click.IntRange(min=1), default=200, show_default=True)
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
    "--ipalloc-range",
    default="10.32.0.0/12",
    show_default=True,
    help="CIDR from which container addresses are allocated.",
)
@click.option(
    "--ipalloc-init",
    default=None,
    help="consensus[=N] (default: N = 1 + initial peers), seed=NAME[,NAME...] or observer.",
)
@click.option(
    "--ipalloc-reclaim-after",
    type=float,
    default=600.0,
    show_default=True,
    callback=_positive,
    help="Seconds a peer must be unreachable before its free space is reclaimed.",
)
@click.option("--no-ipam", is_flag=True, help="Run without IP address management.")
@click.option(
    "--log-level",
    type=click.Choice(["debug", "info", "warning", "error"]),
    default="info",
    show_default=True,
)
@feature_options
def launch_peer(
    peers: tuple[str, ...],
    name: str | None,
    nickname: str,
    listen: str,
    api_listen: str,
    password_file: Path | None,
    data_dir: Path | None,
    conn_limit: int,
    no_discovery: bool,
    heartbeat_interval: float,
    heartbeat_timeout: float,
    gossip_interval: float,
    ipalloc_range: str,
    ipalloc_init: str | None,
    ipalloc_reclaim_after: float,
    no_ipam: bool,
    log_level: str,
    **features: Any,
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
        storage = open_data_dir(directory)
        ipam = None
        if not no_ipam:
            ipam = IpamSettings.parse(
                range_text=ipalloc_range,
                init=ipalloc_init,
                initial_peers=len(initial),
                reclaim_after=ipalloc_reclaim_after,
            )
            check_ipalloc_range(ipam)
        check_options(features)
        password = read_password(password_file)
        config = RouterConfig(
            name=resolve_peer_name(name, storage, directory),
            nickname=nickname,
            mesh=MeshSettings(
                listen_host=listen_host,
                listen_port=listen_port,
                password=password,
                conn_limit=conn_limit,
                initial_peers=initial,
                discovery=not no_discovery,
                max_sockets=mesh_socket_budget(),
            ),
            timing=TimingSettings(
                heartbeat_interval=heartbeat_interval,
                heartbeat_timeout=heartbeat_timeout,
                gossip_interval=gossip_interval,
            ),
            ipam=ipam,
            dataplane=dataplane_settings(features),
            dns=dns_settings(features, None if no_ipam else ipalloc_range),
        )
    except MeshError as exc:
        fail(str(exc))
    for warning in startup_warnings(
        api_host=api_host, listen_host=listen_host, password=password, password_file=password_file
    ):
        log.warning("%s", warning)
    try:
        trio.run(_run_peer, config, storage, directory, api_host, api_port, features)
    except BaseException as exc:
        leaf = _leaf_exception(exc)
        if isinstance(leaf, MeshError):
            fail(str(leaf))
        if isinstance(leaf, OSError):
            fail(f"cannot listen: {leaf.strerror or leaf}")
        raise


async def _run_peer(
    config: RouterConfig,
    storage: Storage,
    data_dir: Path,
    api_host: str,
    api_port: int,
    features: dict[str, Any],
) -> None:
    from meshrouter.api.server import ApiServer
    from meshrouter.node.assembly import build_router
    from meshrouter.node.transport import TcpTransport

    router = build_router(
        config,
        transport=TcpTransport(config.mesh.listen_host, config.mesh.listen_port),
        rng=random.Random(secrets.randbits(128)),
        storage=storage,
        datapath=make_datapath(features, data_dir, config.mesh.listen_host),
    )
    try:
        async with trio.open_nursery() as nursery:

            api_shutdown = trio.Event()
            api_done = trio.Event()

            async def run_router(
                task_status: trio.TaskStatus[str] = trio.TASK_STATUS_IGNORED,
            ) -> None:
                await router.run(task_status=task_status)
                # Let requests in flight answer (e.g. a waiting allocation's 503),
                # then end everything else.
                api_shutdown.set()
                with trio.move_on_after(API_DRAIN):
                    await api_done.wait()
                nursery.cancel_scope.cancel()

            async def run_api(task_status: trio.TaskStatus[str] = trio.TASK_STATUS_IGNORED) -> None:
                try:
                    await ApiServer(router, api_host, api_port, api_shutdown).run(
                        task_status=task_status
                    )
                finally:
                    api_done.set()

            async def watch_signals() -> None:
                with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
                    async for signum in signals:
                        log.info("received %s, shutting down", signal.Signals(signum).name)
                        router.stop()

            nursery.start_soon(watch_signals)
            listen = await nursery.start(run_router)
            api = await nursery.start(run_api)
            written = write_addresses(data_dir, listen, api)
            log.info(
                "meshrouter %s peer %s ready: mesh on %s, API on %s (written to %s)",
                __version__,
                router.label,
                listen,
                api,
                written,
            )
    finally:
        remove_addresses(data_dir)

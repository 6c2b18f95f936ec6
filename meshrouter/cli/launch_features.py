"""``launch peer`` options of the optional features (datapath, DNS) and the
start-up warnings, kept out of ``launch.py`` so that each feature adds its
options in one place.

The datapath is built inside the router's trio run (``make_datapath``): the OVS
driver is imported only by a router that uses it.
"""

from __future__ import annotations

import ipaddress
import logging
import os
import stat
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click

from meshrouter.config import DataplaneSettings
from meshrouter.dns.settings import DnsSettings
from meshrouter.errors import ConfigError
from meshrouter.node.datapath import Datapath

if TYPE_CHECKING:
    from meshrouter.dataplane.ovs.settings import OwnDaemons

log = logging.getLogger("meshrouter")

F = TypeVar("F", bound=Callable[..., Any])

FEATURE_OPTIONS = [
    click.option(
        "--datapath",
        type=click.Choice(["ovs", "none"]),
        default="ovs",
        show_default=True,
        help="ovs: program Open vSwitch; none: control plane only.",
    ),
    click.option(
        "--ovs-db",
        default=None,
        help="ovsdb socket (default: the system one; when none answers, the router runs "
        "its own ovsdb-server and ovs-vswitchd under the data dir).",
    ),
    click.option(
        "--datapath-type",
        type=click.Choice(["auto", "system", "netdev"]),
        default="auto",
        show_default=True,
        help="system: kernel module; netdev: userspace; auto: system if the module is loaded.",
    ),
    click.option(
        "--underlay-dev",
        default=None,
        help="Underlay device (netdev; default: the device of the listen address or default "
        "route).",
    ),
    click.option(
        "--bridge", default="mr-int", show_default=True, help="Integration bridge name."
    ),
    click.option(
        "--ovs-daemons",
        type=click.Choice(["auto", "own", "external"]),
        default="auto",
        show_default=True,
        help="own: always run our own ovsdb-server/ovs-vswitchd under the data dir; "
        "external: only use --ovs-db; auto: our own when none answers.",
    ),
    click.option(
        "--port-io",
        type=click.Choice(["auto", "afxdp", "afxdp-pmd", "afpacket"]),
        default="auto",
        show_default=True,
        help="netdev ports: auto: AF_XDP where this host supports it (probed once; the "
        "first port decides), polled by a PMD thread on hosts with 2+ CPUs, else AF_PACKET; "
        "afxdp: AF_XDP polled by vswitchd's main thread; afxdp-pmd: by a PMD thread. "
        "Ports whose MTU is above 3698 always use AF_PACKET.",
    ),
    click.option(
        "--xdp-mode",
        type=click.Choice(["generic", "native", "best-effort"]),
        default="generic",
        show_default=True,
        help="XDP mode of AF_XDP ports (generic was as fast as native on veth here).",
    ),
    click.option(
        "--pmd-cpu-mask",
        default=None,
        help="PMD ports: the cores of OVS's polling threads (hex, e.g. 0x2; "
        "default: the last CPU the router may use).",
    ),
    click.option(
        "--pmd-max-sleep",
        "pmd_max_sleep_us",
        type=click.IntRange(0, 10000),
        default=100,
        show_default=True,
        help="PMD ports: microseconds an idle PMD may sleep per poll (0: spin).",
    ),
    click.option(
        "--vswitchd-nice",
        type=click.IntRange(-20, 19),
        default=-10,
        show_default=True,
        help="Own OVS daemons: the nice of ovs-vswitchd, as OVS's own ovs-ctl sets it, so "
        "busy containers do not starve the datapath (an external OVS is left alone).",
    ),
    click.option(
        "--port-pool",
        type=click.IntRange(0, 64),
        default=2,
        show_default=True,
        help="Spare container ports kept ready, so an attach does not wait for OVS to add "
        "a port (0: none; raise it for hosts that start containers in bursts).",
    ),
    click.option(
        "--mtu",
        "container_mtu",
        type=click.IntRange(576, 65000),
        default=None,
        help="Container MTU (default: underlay MTU minus the VXLAN overhead).",
    ),
    click.option("--no-dns", is_flag=True, help="Do not run the built-in DNS server."),
    click.option(
        "--dns-domain", default="mesh.local.", show_default=True, help="Domain of container names."
    ),
    click.option(
        "--dns-listen",
        default=None,
        help="HOST[:PORT] of the DNS server (default: 127.0.0.1:53 for the host and the "
        "exposed overlay address for containers, `meshrouter expose`; shown by `status dns`).",
    ),
    click.option(
        "--dns-upstream",
        multiple=True,
        help="Upstream HOST[:PORT] for other names (repeatable; overrides --resolv-conf).",
    ),
    click.option(
        "--resolv-conf",
        default="/etc/resolv.conf",
        show_default=True,
        help="Where upstream servers are read from when no --dns-upstream is given.",
    ),
    click.option(
        "--dns-ttl", type=click.IntRange(0, 86400), default=5, show_default=True,
        help="TTL of answers, seconds.",
    ),
]


def feature_options(function: F) -> F:
    """Apply every feature option to the ``launch peer`` command."""
    for option in reversed(FEATURE_OPTIONS):
        function = option(function)
    return function


def dns_settings(options: dict[str, Any], ipalloc_range: str | None) -> DnsSettings | None:
    if options["no_dns"]:
        return None
    return DnsSettings(
        domain=options["dns_domain"],
        listen=options["dns_listen"],
        upstreams=tuple(options["dns_upstream"]),
        resolv_conf=options["resolv_conf"],
        ttl=options["dns_ttl"],
        overlay_networks=(ipalloc_range,) if ipalloc_range else (),
    )


def dataplane_settings(options: dict[str, Any]) -> DataplaneSettings:
    return DataplaneSettings()


def make_datapath(options: dict[str, Any], data_dir: Path, listen_host: str) -> Datapath | None:
    """The datapath the options ask for (None: the Router's default, no datapath)."""
    if options["datapath"] == "none":
        return None
    from meshrouter.dataplane.ovs.datapath import OvsDatapath
    from meshrouter.dataplane.ovs.settings import OvsSettings

    own_daemons: dict[str, OwnDaemons] = {"auto": "auto", "own": "always", "external": "never"}

    settings = OvsSettings(
        data_dir=data_dir,
        db_socket=options["ovs_db"],
        datapath_type=options["datapath_type"],
        bridge=options["bridge"],
        underlay_dev=options["underlay_dev"],
        listen_address=None if listen_host in ("", "0.0.0.0", "::") else listen_host,
        container_mtu=options["container_mtu"],
        own_daemons=own_daemons[options["ovs_daemons"]],
        port_io=options["port_io"],
        xdp_mode=options["xdp_mode"],
        pmd_cpu_mask=options["pmd_cpu_mask"],
        pmd_max_sleep_us=options["pmd_max_sleep_us"],
        port_pool=options["port_pool"],
        vswitchd_nice=options["vswitchd_nice"],
    )
    return OvsDatapath(settings)


def startup_warnings(
    *, api_host: str, listen_host: str, password: bytes | None, password_file: Path | None
) -> list[str]:
    """What an operator should know before trusting this router's exposure."""
    warnings: list[str] = []
    if not _is_loopback(api_host):
        warnings.append(
            f"the API listens on {api_host}, beyond loopback: anyone who reaches it can "
            "stop this router, make it dial anywhere and read its report"
        )
    if password is None and not _is_loopback(listen_host):
        warnings.append(
            f"no password: the mesh port on {listen_host or '0.0.0.0'} is unencrypted and "
            "unauthenticated; anyone who reaches it can join the mesh, read its gossip and "
            "announce routes (set --password-file or MESHROUTER_PASSWORD; "
            "`meshrouter keygen FILE` makes one)"
        )
    if password_file is not None:
        try:
            mode = os.stat(password_file).st_mode
        except OSError:
            mode = 0
        if mode & (stat.S_IRGRP | stat.S_IROTH):
            warnings.append(
                f"--password-file {password_file} is readable by other users "
                f"(mode {stat.S_IMODE(mode):o}); chmod 600 it"
            )
    if password is not None:
        from meshrouter.wire.password import password_warning

        weak = password_warning(password)
        if weak:
            warnings.append(weak)
    return warnings


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_options(options: dict[str, Any]) -> None:
    """Refuse combinations that cannot work, before anything starts."""
    if options["datapath"] == "none" and (options["underlay_dev"] or options["ovs_db"]):
        raise ConfigError("--underlay-dev and --ovs-db need --datapath ovs")

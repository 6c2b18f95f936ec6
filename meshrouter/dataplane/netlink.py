"""Container ports and the underlay address, made with pyroute2 from a trio program.

pyroute2 0.9 is built on asyncio and has no trio support (ovs-lab NOTES.md, section
6), so every function here is synchronous and the async wrappers run it with
``trio.to_thread.run_sync``.  One ``IPRoute`` per call, opened in the thread that
uses it.

Namespaces.  The switch may live in another network namespace than the router (the
namespace lab runs one OVS per "host" namespace; production passes ``None``).  A
network namespace is a property of a *thread* (``setns(2)`` with ``CLONE_NEWNET``
changes only the caller), and a socket belongs to the namespace its creating
thread was in.  So a call for namespace ``X`` runs in a fresh, short-lived thread
that enters ``X`` first; the pooled trio worker threads never change namespace.
Inside that thread ``IPRoute()`` and ``Ethtool()`` act on ``X`` without the
fork-per-open cost of ``IPRoute(netns=...)`` (4 ms) and without its pitfall of
silently creating a mistyped namespace (NOTES P7).

Attach order (NOTES section 6, pitfall P1): create the veth pair in the switch's
namespace, switch TX checksum offload off on the container end *before* moving it
(the ioctl acts only in the caller's namespace, and the setting survives the
move), move it, then name/MAC/MTU/address/route it inside the container.  Any
failure deletes the host end, which deletes the pair wherever its other end is.
"""

from __future__ import annotations

import ctypes
import errno
import hashlib
import ipaddress
import os
import socket
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import trio
from pyroute2 import Ethtool, IPRoute, NetlinkError

from meshrouter.errors import ConflictError, InvalidRequestError, NotFoundError, UnavailableError

T = TypeVar("T")

CLONE_NEWNET = 0x40000000
IFNAMSIZ = 15
_libc = ctypes.CDLL(None, use_errno=True)


# -- namespaces ---------------------------------------------------------------------


def resolve_netns(spec: str) -> str:
    """The path of the network namespace ``spec``: a name (``/run/netns/NAME``), a
    path, or a PID (``/proc/PID/ns/net``).  A missing one is ``NotFoundError``."""
    if not spec or len(spec) > 4096 or "\0" in spec:
        raise InvalidRequestError("network namespace must be a name, a path or a PID")
    if spec.isdigit():
        path = f"/proc/{int(spec)}/ns/net"
        what = f"process {spec}"
    elif "/" in spec:
        path = spec
        what = spec
    else:
        if spec in (".", "..") or len(spec) > 255:
            raise InvalidRequestError(f"invalid network namespace name {spec!r}")
        path = f"/run/netns/{spec}"
        what = f"network namespace {spec!r}"
    if not os.path.exists(path):
        raise NotFoundError(f"no such network namespace: {what} ({path} does not exist)")
    return path


def _setns(fd: int) -> None:
    if _libc.setns(fd, CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"setns: {os.strerror(err)}")


@contextmanager
def entered(netns_path: str | None) -> Iterator[None]:
    """Run the body in ``netns_path`` (this thread only); ``None`` means stay."""
    if netns_path is None:
        yield
        return
    own = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
    try:
        try:
            target = os.open(netns_path, os.O_RDONLY)
        except FileNotFoundError:
            raise NotFoundError(f"network namespace {netns_path} vanished") from None
        try:
            _setns(target)
        finally:
            os.close(target)
        try:
            yield
        finally:
            _setns(own)
    finally:
        os.close(own)


def _run_in_fresh_thread(netns_path: str | None, fn: Callable[[], T]) -> T:
    box: dict[str, Any] = {}

    def body() -> None:
        try:
            with entered(netns_path):
                box["value"] = fn()
        except BaseException as exc:  # re-raised in the caller's thread
            box["error"] = exc

    thread = threading.Thread(target=body, name="meshrouter-netns", daemon=True)
    thread.start()
    thread.join()
    if "error" in box:
        raise box["error"]
    return box["value"]  # type: ignore[no-any-return]


async def in_netns(netns_path: str | None, fn: Callable[[], T]) -> T:
    """Run the blocking ``fn`` in ``netns_path`` (``None``: ours) off the trio thread.

    Always in a fresh thread, even for our own namespace: ``fn`` may enter a
    container's namespace itself, and a pooled worker must never be left in one
    if restoring failed."""
    return await trio.to_thread.run_sync(_run_in_fresh_thread, netns_path, fn)


# -- helpers ------------------------------------------------------------------------


def host_ifname(container_id: str) -> str:
    """The switch-side veth name of a container: stable, unique, <= 15 characters."""
    return "mr" + hashlib.sha256(container_id.encode()).hexdigest()[:11]


def _temp_ifname(container_id: str) -> str:
    return "mt" + hashlib.sha256(container_id.encode()).hexdigest()[:11]


def _index(ip: Any, ifname: str) -> int | None:
    found = ip.link_lookup(ifname=ifname)
    return int(found[0]) if found else None


def _attr(msg: Any, name: str) -> Any:
    return msg.get_attr(name) if hasattr(msg, "get_attr") else msg.get(name)


def link_exists(ifname: str) -> bool:
    """Whether ``ifname`` exists in the calling thread's namespace."""
    with IPRoute() as ip:
        return _index(ip, ifname) is not None


def link_names() -> set[str]:
    """Every interface name in the calling thread's namespace (one netlink dump)."""
    with IPRoute() as ip:
        return {str(_attr(link, "IFLA_IFNAME")) for link in ip.get_links()}


def delete_link(ifname: str) -> bool:
    """Delete ``ifname`` (a veth end takes its peer with it); False if it was gone."""
    with IPRoute() as ip:
        index = _index(ip, ifname)
        if index is None:
            return False
        try:
            ip.link("del", index=index)
        except NetlinkError as exc:
            if exc.code == errno.ENODEV:
                return False
            raise
        return True


# -- veth attach --------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class VethSpec:
    """One container port to make: host end in the caller's namespace, the other in
    ``container_netns`` (a path) as ``ifname`` with ``mac``/``cidr``/``mtu``."""

    container_id: str
    container_netns: str
    ifname: str
    mac: str
    cidr: str
    mtu: int
    gateway: str | None = None

    def validate(self) -> None:
        if not self.ifname or len(self.ifname) > IFNAMSIZ or "/" in self.ifname:
            raise InvalidRequestError(f"invalid interface name {self.ifname!r} (1-15 characters)")
        if not 68 <= self.mtu <= 65535:
            raise InvalidRequestError(f"MTU {self.mtu} out of range (68-65535)")
        try:
            if "/" not in self.cidr:
                raise ValueError(self.cidr)
            iface = ipaddress.ip_interface(self.cidr)
        except ValueError:
            raise InvalidRequestError(f"invalid address {self.cidr!r} (want CIDR)") from None
        if iface.version != 4:
            raise InvalidRequestError("only IPv4 container addresses are supported")
        if self.gateway is not None:
            try:
                ipaddress.IPv4Address(self.gateway)
            except ValueError:
                raise InvalidRequestError(f"invalid gateway {self.gateway!r}") from None
        parts = self.mac.split(":")
        if len(parts) != 6 or not all(len(p) == 2 for p in parts):
            raise InvalidRequestError(f"invalid MAC {self.mac!r}")
        try:
            first = int(parts[0], 16)
            [int(p, 16) for p in parts]
        except ValueError:
            raise InvalidRequestError(f"invalid MAC {self.mac!r}") from None
        if first & 1:
            raise InvalidRequestError(f"MAC {self.mac} is a group address")


def _container_matches(spec: VethSpec) -> bool:
    """Whether the container already holds ``spec.ifname`` with ``spec.mac`` (idempotence)."""
    with entered(spec.container_netns), IPRoute() as ip:
        index = _index(ip, spec.ifname)
        if index is None:
            return False
        link = ip.get_links(index)[0]
        return str(_attr(link, "IFLA_ADDRESS")).lower() == spec.mac.lower()


def _configure_container_end(spec: VethSpec) -> None:
    """Address, lo and link up, route: the end arrived already named (``finish_veth``)."""
    iface = ipaddress.IPv4Interface(spec.cidr)
    with entered(spec.container_netns), IPRoute() as ip:
        index = _index(ip, spec.ifname)
        if index is None:
            raise UnavailableError(
                f"veth end {spec.ifname} did not arrive in {spec.container_netns}")
        ip.addr("add", index=index, address=str(iface.ip), prefixlen=iface.network.prefixlen)
        lo = _index(ip, "lo")
        if lo is not None:
            ip.link("set", index=lo, state="up")
        ip.link("set", index=index, state="up")
        if spec.gateway is not None:
            ip.route("replace", dst="0.0.0.0/0", gateway=spec.gateway, oif=index)


def tx_checksum_off(ifname: str) -> None:
    """NOTES P1: the userspace datapath forwards TCP with an empty checksum otherwise."""
    with Ethtool() as et:
        features = et.get_features(ifname)
        for name in ("tx-checksum-ip-generic", "tx-checksum-ipv4", "tx-checksum-ipv6"):
            feature = features.features.get(name)
            if feature is not None and feature.available:
                feature.enable = False
        et.set_features(ifname, features)


def attach_veth(spec: VethSpec, host_mtu: int | None = None,
                mark: Callable[[str], None] = lambda step: None) -> tuple[str, bool]:
    """Make the pair for ``spec`` (caller's namespace = the switch's); returns
    (host end, created).  An existing pair whose container end matches is kept.
    ``mark(step)`` is called after each step (the attach-latency breakdown)."""
    spec.validate()
    host = host_ifname(spec.container_id)
    temp = _temp_ifname(spec.container_id)
    with IPRoute() as ip:
        if _index(ip, host) is not None:
            if _container_matches(spec):
                return host, False
            delete_link(host)  # a stale half: its container end is gone or different
        if _index(ip, temp) is not None:
            delete_link(temp)
        try:
            ip.link("add", ifname=host, kind="veth", peer={"ifname": temp})
        except NetlinkError as exc:
            raise UnavailableError(f"netlink: cannot make veth {host}: {exc}") from None
        mark("veth created")
        try:
            tx_checksum_off(temp)
        except BaseException:
            delete_link(host)
            raise
        mark("tx checksum off")
        finish_veth(ip, spec, host, temp, host_mtu or spec.mtu, mark)
    return host, True


def finish_veth(ip: Any, spec: VethSpec, host: str, temp: str, host_mtu: int | None,
                mark: Callable[[str], None] = lambda step: None) -> None:
    """Move ``temp`` (the pair's other end, TX checksum already off) into the
    container and configure it; set ``host`` up.  Any failure deletes the pair."""
    try:
        netns_fd = os.open(spec.container_netns, os.O_RDONLY)
    except OSError:
        delete_link(host)
        raise NotFoundError(f"network namespace {spec.container_netns} vanished") from None
    try:
        temp_index = _index(ip, temp)
        if temp_index is None:
            raise UnavailableError(f"veth end {temp} vanished")
        # one message: move, rename, MAC and MTU (the move is the costly part: the
        # kernel waits for an RCU grace period; a separate rename costs another)
        try:
            ip.link("set", index=temp_index, net_ns_fd=netns_fd, ifname=spec.ifname,
                    address=spec.mac, mtu=spec.mtu)
        except NetlinkError as exc:
            if exc.code == errno.EEXIST:
                raise ConflictError(f"interface {spec.ifname} already exists in "
                                    f"{spec.container_netns}") from None
            raise
        mark("moved into netns")
        _configure_container_end(spec)
        mark("address and route")
        host_index = _index(ip, host)
        if host_index is None:
            raise NotFoundError(f"veth {host} vanished: namespace {spec.container_netns} deleted?")
        if host_mtu is not None:
            ip.link("set", index=host_index, mtu=host_mtu, state="up")
    except BaseException as exc:
        delete_link(host)
        if isinstance(exc, (NetlinkError, OSError)):
            raise UnavailableError(f"netlink: cannot make veth {host}: {exc}") from None
        raise
    finally:
        os.close(netns_fd)


# -- underlay -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Underlay:
    """A device's IPv4 addresses and gateway routes, as moved onto ``br-phy``."""

    dev: str
    mac: str
    mtu: int
    addresses: tuple[tuple[str, int], ...]
    gateways: tuple[tuple[str, int, str], ...]
    """(destination, prefix length, gateway) of each route through ``dev``."""

    def to_json(self) -> dict[str, Any]:
        return {
            "dev": self.dev,
            "mac": self.mac,
            "mtu": self.mtu,
            "addresses": [list(a) for a in self.addresses],
            "gateways": [list(g) for g in self.gateways],
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Underlay:
        return cls(
            dev=str(data["dev"]),
            mac=str(data["mac"]),
            mtu=int(data["mtu"]),
            addresses=tuple((str(a), int(p)) for a, p in data["addresses"]),
            gateways=tuple((str(d), int(p), str(g)) for d, p, g in data["gateways"]),
        )


def default_route_dev() -> str | None:
    """The device of the IPv4 default route in the caller's namespace."""
    with IPRoute() as ip:
        for route in ip.get_routes(family=socket.AF_INET):
            if route["dst_len"] == 0 and _attr(route, "RTA_OIF") is not None:
                links = ip.get_links(_attr(route, "RTA_OIF"))
                if links:
                    return str(_attr(links[0], "IFLA_IFNAME"))
    return None


def dev_for_address(address: str) -> str | None:
    """The device that holds IPv4 ``address`` in the caller's namespace."""
    with IPRoute() as ip:
        for addr in ip.get_addr(family=socket.AF_INET):
            if _attr(addr, "IFA_ADDRESS") == address:
                links = ip.get_links(addr["index"])
                if links:
                    return str(_attr(links[0], "IFLA_IFNAME"))
    return None


def read_underlay(dev: str) -> Underlay:
    """Addresses, gateway routes, MAC and MTU of ``dev`` (caller's namespace)."""
    with IPRoute() as ip:
        index = _index(ip, dev)
        if index is None:
            raise NotFoundError(f"underlay device {dev} does not exist")
        link = ip.get_links(index)[0]
        addresses = tuple(
            (str(_attr(a, "IFA_ADDRESS")), int(a["prefixlen"]))
            for a in ip.get_addr(family=socket.AF_INET, index=index)
        )
        gateways = []
        for route in ip.get_routes(family=socket.AF_INET, oif=index):
            gateway = _attr(route, "RTA_GATEWAY")
            if gateway is not None:
                dst = _attr(route, "RTA_DST") or "0.0.0.0"
                gateways.append((str(dst), int(route["dst_len"]), str(gateway)))
        return Underlay(
            dev=dev,
            mac=str(_attr(link, "IFLA_ADDRESS")),
            mtu=int(_attr(link, "IFLA_MTU")),
            addresses=addresses,
            gateways=tuple(gateways),
        )


def move_addresses(underlay: Underlay, source: str, target: str) -> None:
    """Move ``underlay``'s addresses and gateway routes from ``source`` to ``target``
    (both in the caller's namespace); ``target`` is set up.  Idempotent."""
    with IPRoute() as ip:
        src = _index(ip, source)
        dst = _index(ip, target)
        if dst is None:
            raise NotFoundError(f"device {target} does not exist")
        ip.link("set", index=dst, state="up")
        for address, prefix in underlay.addresses:
            if src is not None:
                try:
                    ip.addr("del", index=src, address=address, prefixlen=prefix)
                except NetlinkError as exc:
                    if exc.code != errno.EADDRNOTAVAIL:
                        raise
            try:
                ip.addr("add", index=dst, address=address, prefixlen=prefix)
            except NetlinkError as exc:
                if exc.code != errno.EEXIST:
                    raise
        for dest, prefix, gateway in underlay.gateways:
            ip.route("replace", dst=f"{dest}/{prefix}", gateway=gateway, oif=dst)


def netns_inode(path: str) -> int | None:
    """The namespace identity behind ``path`` (None if it no longer exists)."""
    try:
        return Path(path).stat().st_ino
    except OSError:
        return None

"""Theory of operation: the router's answers turned into the spec's, and back.

* ``add_result``: an attach answer (``POST /attach``) plus the DNS status
  becomes the ADD result: the container interface (with its sandbox) and the
  host end of the veth, the address with its interface index, the route of the
  container's network, and DNS (the router's built-in server at the address it
  names for containers -- the host's exposed overlay address -- and its domain,
  unless the configuration gives ``dns``).
* ``error_for``: an API failure (HTTP status and message) becomes a
  ``CniError`` with the spec's code: unreachable or busy -> 11 (try again
  later), invalid -> 7, not found -> 3, conflict -> 100, internal -> 101.
* ``exposure_pending``: whether ADD should wait a moment for the DNS address
  (the first container of a fresh mesh: the router exposes the host just after).
* ``status_problem``: why the plugin cannot serve ADD now (STATUS code 50), from
  ``/status/ipam``.
* ``check_problem``: why a container's attachment differs from ``prevResult``.

Pure: dicts in, dicts out.
"""

from __future__ import annotations

import ipaddress

from meshrouter.cni.spec import (
    INVALID_NETWORK_CONFIG,
    IO_FAILURE,
    ROUTER_FAILED,
    ROUTER_REFUSED,
    TRY_AGAIN_LATER,
    UNKNOWN_CONTAINER,
    CniError,
    version_tuple,
)

TYPE_CHECKING = False  # typing costs ~6 ms per start; mypy reads this name as True
if TYPE_CHECKING:
    from typing import Any


def add_result(cni_version: str, attached: dict[str, Any], netns: str,
               dns: dict[str, Any]) -> dict[str, Any]:
    """The ADD result of one attachment (``attached`` as ``POST /attach`` answers)."""
    try:
        iface = ipaddress.IPv4Interface(str(attached["ip"]))
        container_if = {"name": str(attached["ifname"]), "mac": str(attached["mac"]),
                        "sandbox": netns}
        host_if: dict[str, Any] = {"name": str(attached["host_ifname"])}
    except (KeyError, ValueError) as exc:
        raise CniError(IO_FAILURE, "the router's attach answer is missing a field; is the "
                       "router the same version as meshrouter-cni?", repr(exc)) from None
    if attached.get("mtu"):
        container_if["mtu"] = attached["mtu"]
    address: dict[str, Any] = {"address": str(iface), "interface": 1}
    if version_tuple(cni_version) < (1, 0, 0):
        address["version"] = "4"
    return {
        "cniVersion": cni_version,
        "interfaces": [host_if, container_if],
        "ips": [address],
        "routes": [{"dst": str(iface.network)}],
        "dns": dns,
    }


def dns_section(configured: dict[str, Any] | None, status: dict[str, Any] | None) -> dict[str, Any]:
    """``dns`` of the result: the configuration's, else the router's server and domain."""
    if configured is not None:
        return dict(configured)
    if not status:
        return {}
    out: dict[str, Any] = {}
    nameserver = _nameserver(status)
    if nameserver:
        out["nameservers"] = [nameserver]
    domain = str(status.get("domain", "")).rstrip(".")
    if domain:
        out["domain"] = domain
        out["search"] = [domain]
    return out


def _nameserver(status: dict[str, Any]) -> str:
    """The DNS server's address for containers, or '' (the runtime's resolver stays).

    The router names it (``nameserver``: the host's exposed overlay address, the
    one address of the host a container on the overlay can reach, or '' when it
    has none).  A router from before ``expose`` only says where it listens: that
    address, unless it is 0.0.0.0 or loopback, which no container can reach."""
    if "nameserver" in status:
        named = str(status["nameserver"] or "")
        try:
            return str(ipaddress.ip_address(named)) if named else ""
        except ValueError:
            return ""  # not an address: nothing a resolv.conf can name
    listen = str(status.get("listen", ""))
    host = listen.rsplit(":", 1)[0].strip("[]") if ":" in listen else ""
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return ""  # "disabled"
    return "" if address.is_unspecified or address.is_loopback else host


def exposure_pending(expose: Any) -> bool:
    """Whether the router is about to expose the host (``/status/expose`` says
    ``pending``): then the DNS address for containers comes within a second or so."""
    return (isinstance(expose, dict) and expose.get("pending") is True
            and expose.get("state") != "exposed")


def error_for(status: int, message: str, what: str) -> CniError:
    """The CniError for an API failure (``ApiError.status``, its text) while doing ``what``."""
    if status in (502, 503, 504):
        return CniError(TRY_AGAIN_LATER, f"{what}: {message}; start or fix the meshrouter "
                        "router on this host (`meshrouter status`), then retry")
    if status in (400, 413, 415):
        return CniError(INVALID_NETWORK_CONFIG, f"{what}: the router refused the request: "
                        f"{message}; fix the network configuration or CNI_ARGS")
    if status == 404:
        return CniError(UNKNOWN_CONTAINER, f"{what}: {message}")
    if status == 409:
        return CniError(ROUTER_REFUSED, f"{what}: {message}")
    return CniError(ROUTER_FAILED, f"{what}: the router failed ({status}): {message}; "
                    "see the router's log")


def status_problem(ipam: dict[str, Any] | None) -> str | None:
    """Why ADD cannot be served now (None: it can).  ``ipam`` is ``/status/ipam``,
    or None when the router runs without IPAM."""
    if ipam is None:
        return "the router runs without IPAM (--no-ipam): containers cannot get addresses"
    state = str(ipam.get("state", ""))
    if state.startswith("idle"):
        # Consensus mode founds the ring at the first allocation: ADD starts the vote.
        return None
    if state != "ready":
        pending = ipam.get("pending") or []
        reason = pending[0].get("reason") if pending and isinstance(pending[0], dict) else ""
        return f"the address ring is not ready ({state}{'; ' + reason if reason else ''})"
    peers = ipam.get("peers") or []
    if not any(isinstance(p, dict) and p.get("reachable") and int(p.get("size") or 0) > 0
               for p in peers):
        return ("no reachable peer owns address space: connect this router to the mesh "
                "(`meshrouter connect`) or reclaim the space of dead peers (`meshrouter rmpeer`)")
    return None


def check_problem(prev: dict[str, Any] | None, endpoint: dict[str, Any] | None,
                  container_id: str) -> str | None:
    """Why the attachment does not match ``prevResult`` (None: it does)."""
    if endpoint is None:
        return f"container {container_id} has no attachment on this router"
    if prev is None:
        return None
    addresses = {str(ipaddress.IPv4Interface(str(i.get("address"))).ip)
                 for i in prev.get("ips", []) if isinstance(i, dict) and i.get("address")}
    if addresses and endpoint.get("ip") not in addresses:
        return (f"container {container_id} has address {endpoint.get('ip')} on the router, "
                f"prevResult says {', '.join(sorted(addresses))}")
    macs = {str(i.get("mac")) for i in prev.get("interfaces", [])
            if isinstance(i, dict) and i.get("sandbox") and i.get("mac")}
    if macs and endpoint.get("mac") not in macs:
        return (f"container {container_id} has MAC {endpoint.get('mac')} on the router, "
                f"prevResult says {', '.join(sorted(macs))}")
    return None

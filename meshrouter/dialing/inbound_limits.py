"""Theory of operation: how many unauthenticated connections we let wait.

Anyone who reaches the mesh port can open connections without proving
anything.  Each costs a descriptor and memory until its handshake completes, so
three bounds apply to every inbound connection *before* it is served, counting
every connection that has not finished its handshake -- those waiting for the
accept throttle included:

* at most ``max_pending`` inbound connections in handshake at once;
* at most ``per_source`` of them from one source address, so one host cannot
  take every slot from the others;
* at most ``max_sockets`` open mesh sockets in all (established, handshaking,
  outbound), a budget the launcher derives from the process's descriptor limit
  minus a reserve, so the router's own state files and its API always find a
  descriptor (running out made the next state write fail and the router stop).

Refused connections are closed at once with the reason recorded.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class InboundLimits:
    max_pending: int = 64
    per_source: int = 16
    max_sockets: int | None = None


def source_host(address: str) -> str:
    """The host part of ``host:port`` or ``[v6]:port``."""
    return address.rsplit(":", 1)[0].strip("[]") if ":" in address else address


def inbound_refusal(
    address: str,
    *,
    pending: Iterable[str],
    open_sockets: int,
    limits: InboundLimits,
) -> str | None:
    """Why a new inbound connection from ``address`` is refused, or None.

    ``pending`` lists the addresses of the inbound connections still in
    handshake (or waiting to start it); ``open_sockets`` counts every mesh
    socket we hold now, the new one excluded.
    """
    if limits.max_sockets is not None and open_sockets >= limits.max_sockets:
        return (
            f"descriptor budget of {limits.max_sockets} mesh sockets reached "
            "(reserve kept for state files and the API)"
        )
    pending = list(pending)
    if len(pending) >= limits.max_pending:
        return f"too many inbound handshakes in progress ({limits.max_pending})"
    source = source_host(address)
    same_source = sum(1 for other in pending if source_host(other) == source)
    if same_source >= limits.per_source:
        return f"too many inbound handshakes from {source} ({limits.per_source})"
    return None
